"""The transition table: exactly six legal moves, everything else refused."""

from __future__ import annotations

import itertools

import pytest

from lrod.domain.states import (
    ACTIVE_STATES,
    CREATIONS,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    State,
    can_move,
    check_move,
    sources_of,
)

LEGAL = {
    (State.QUEUED, State.RUNNING),
    (State.QUEUED, State.CANCELLED),
    (State.RUNNING, State.SUCCEEDED),
    (State.RUNNING, State.FAILED),
    (State.RUNNING, State.CANCELLED),
    (State.RUNNING, State.QUEUED),
}
ALL_PAIRS = list(itertools.product(State, State))
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in LEGAL]


def _id(pair: tuple[State, State]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_the_table_holds_exactly_the_legal_moves() -> None:
    assert set(TRANSITIONS) == LEGAL


def test_every_pair_is_covered() -> None:
    assert len(ALL_PAIRS) == 25
    assert len(ILLEGAL) == 25 - len(LEGAL)


@pytest.mark.parametrize("pair", sorted(LEGAL), ids=_id)
def test_legal_move_is_allowed(pair: tuple[State, State]) -> None:
    source, target = pair
    assert can_move(source, target)
    check_move(source, target)  # does not raise


@pytest.mark.parametrize("pair", ILLEGAL, ids=_id)
def test_illegal_move_is_refused(pair: tuple[State, State]) -> None:
    source, target = pair
    assert not can_move(source, target)
    with pytest.raises(IllegalTransition) as caught:
        check_move(source, target)
    assert caught.value.source is source
    assert caught.value.target is target
    assert f"{source} -> {target}" in str(caught.value)


@pytest.mark.parametrize("state", list(State))
def test_self_move_is_refused(state: State) -> None:
    with pytest.raises(IllegalTransition):
        check_move(state, state)


@pytest.mark.parametrize("source", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("target", list(State))
def test_nothing_leaves_a_terminal_state(source: State, target: State) -> None:
    with pytest.raises(IllegalTransition):
        check_move(source, target)


def test_illegal_transition_is_a_value_error() -> None:
    # Callers may catch ValueError; the store relies on it being a bug signal, not user input.
    assert issubclass(IllegalTransition, ValueError)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (State.QUEUED, {State.RUNNING}),
        (State.RUNNING, {State.QUEUED}),
        (State.SUCCEEDED, {State.RUNNING}),
        (State.FAILED, {State.RUNNING}),
        (State.CANCELLED, {State.QUEUED, State.RUNNING}),
    ],
)
def test_sources_of(target: State, sources: set[State]) -> None:
    assert sources_of(target) == frozenset(sources)


@pytest.mark.parametrize("target", list(State))
def test_sources_of_agrees_with_can_move(target: State) -> None:
    assert sources_of(target) == {s for s in State if can_move(s, target)}


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (State.QUEUED, False),
        (State.RUNNING, False),
        (State.SUCCEEDED, True),
        (State.FAILED, True),
        (State.CANCELLED, True),
    ],
)
def test_terminal_and_active(state: State, terminal: bool) -> None:
    assert state.terminal is terminal
    assert state.active is not terminal
    assert (state in TERMINAL_STATES) is terminal
    assert (state in ACTIVE_STATES) is not terminal


def test_active_and_terminal_partition_the_states() -> None:
    assert frozenset(State) == ACTIVE_STATES | TERMINAL_STATES
    assert not ACTIVE_STATES & TERMINAL_STATES


@pytest.mark.parametrize("pair", sorted(LEGAL), ids=_id)
def test_every_transition_is_lettered(pair: tuple[State, State]) -> None:
    # docs/architecture.md names transitions by these letters.
    letter, _, explanation = TRANSITIONS[pair].partition(": ")
    assert len(letter) == 1
    assert letter.isalpha()
    assert explanation


def test_letters_are_unique() -> None:
    letters = [text.partition(":")[0] for text in TRANSITIONS.values()]
    assert sorted(letters) == list("abcdef")


def test_an_operation_is_created_queued_or_handed_off_running() -> None:
    assert set(CREATIONS) == {State.QUEUED, State.RUNNING}
    assert CREATIONS[State.RUNNING].startswith("g: ")  # docs/architecture.md's letter
    # Handed off is what the create and a claim (a) make in one transaction.
    assert can_move(State.QUEUED, State.RUNNING)
