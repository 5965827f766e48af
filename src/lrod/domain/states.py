"""Job states and the one table of legal moves between them."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def active(self) -> bool:
        return not self.terminal


TERMINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
ACTIVE_STATES = frozenset(State) - TERMINAL_STATES

# The letters name the transitions in docs/architecture.md.
TRANSITIONS: dict[tuple[State, State], str] = {
    (State.QUEUED, State.RUNNING): "a: a worker claims the job",
    (State.QUEUED, State.CANCELLED): "b: cancelled before it started",
    (State.RUNNING, State.SUCCEEDED): "c: the handler returned its output",
    (State.RUNNING, State.FAILED): "d: a permanent failure, a time limit, or attempts exhausted",
    (State.RUNNING, State.CANCELLED): "e: the running handler was cancelled",
    (State.RUNNING, State.QUEUED): "f: a temporary failure schedules a retry, or the lease is lost",
}


# The states an operation is created in: QUEUED by any Submit, RUNNING by a
# Submit handed off to an idle local worker pool (the create and a claim, a,
# in one transaction; `lrod serve --hand-off`). Lettered as above.
CREATIONS: dict[State, str] = {
    State.QUEUED: "Submit: stored for the claim loops",
    State.RUNNING: "g: a Submit handed off to an idle local worker",
}


class IllegalTransition(ValueError):
    """A move the state machine does not allow; a bug in the caller, never user input."""

    def __init__(self, source: State, target: State) -> None:
        super().__init__(f"illegal transition {source} -> {target}")
        self.source = source
        self.target = target


def can_move(source: State, target: State) -> bool:
    return (source, target) in TRANSITIONS


def check_move(source: State, target: State) -> None:
    if not can_move(source, target):
        raise IllegalTransition(source, target)


def sources_of(target: State) -> frozenset[State]:
    """The states from which `target` may be reached, for conditional updates."""
    return frozenset(src for (src, dst) in TRANSITIONS if dst == target)
