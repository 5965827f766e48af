"""parse_filter: the AIP-160 subset ListOperations accepts, and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lrod.domain.errors import Code, InvalidArgument
from lrod.domain.filters import (
    MAX_FILTER_LENGTH,
    Condition,
    Field,
    Filter,
    Op,
    parse_filter,
)
from lrod.domain.states import State

NEW_YEAR = datetime(2024, 1, 1, tzinfo=UTC)


def _only(text: str) -> Condition:
    parsed = parse_filter(text)
    assert len(parsed.conditions) == 1
    return parsed.conditions[0]


def _refused(text: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text)
    error = caught.value
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason == "INVALID_FILTER"
    assert len(error.violations) == 1
    assert error.violations[0].field == "filter"
    assert error.violations[0].reason == "INVALID_FILTER"
    return error


@pytest.mark.parametrize("text", ["", " ", "   \t\n "])
def test_empty_filter_matches_everything(text: str) -> None:
    assert parse_filter(text) == Filter()
    assert parse_filter(text).conditions == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("done = true", Condition(Field.DONE, Op.EQ, True)),
        ("done = false", Condition(Field.DONE, Op.EQ, False)),
        ("done != true", Condition(Field.DONE, Op.NE, True)),
        ('done = "false"', Condition(Field.DONE, Op.EQ, False)),
        ("done=true", Condition(Field.DONE, Op.EQ, True)),
        ("metadata.state = QUEUED", Condition(Field.STATE, Op.EQ, State.QUEUED)),
        ("metadata.state != CANCELLED", Condition(Field.STATE, Op.NE, State.CANCELLED)),
        ('metadata.state = "RUNNING"', Condition(Field.STATE, Op.EQ, State.RUNNING)),
        ("metadata.job_type = export", Condition(Field.JOB_TYPE, Op.EQ, "export")),
        ("metadata.job_type != export", Condition(Field.JOB_TYPE, Op.NE, "export")),
        ('metadata.job_type = "a b"', Condition(Field.JOB_TYPE, Op.EQ, "a b")),
        ("labels.env = prod", Condition(Field.LABEL, Op.EQ, "prod", "env")),
        ("labels.env != prod", Condition(Field.LABEL, Op.NE, "prod", "env")),
        ("metadata.labels.env = prod", Condition(Field.LABEL, Op.EQ, "prod", "env")),
        ('labels.team = ""', Condition(Field.LABEL, Op.EQ, "", "team")),
        ("  labels.env   =   prod  ", Condition(Field.LABEL, Op.EQ, "prod", "env")),
    ],
)
def test_equality_fields(text: str, expected: Condition) -> None:
    assert _only(text) == expected


@pytest.mark.parametrize("field", ["create_time", "metadata.create_time"])
@pytest.mark.parametrize(
    ("optext", "op"),
    [
        ("<", Op.LT),
        ("<=", Op.LE),
        (">", Op.GT),
        (">=", Op.GE),
        ("=", Op.EQ),
        ("!=", Op.NE),
    ],
)
def test_create_time_takes_every_operator(field: str, optext: str, op: Op) -> None:
    condition = _only(f'{field} {optext} "2024-01-01T00:00:00Z"')
    assert condition == Condition(Field.CREATE_TIME, op, NEW_YEAR)


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T01:00:00+01:00",
        "2023-12-31T19:00:00-05:00",
        "2024-01-01T00:00:00.000Z",
    ],
)
def test_timestamps_are_normalised_to_utc(stamp: str) -> None:
    value = _only(f'create_time > "{stamp}"').value
    assert isinstance(value, datetime)
    assert value == NEW_YEAR
    assert value.utcoffset() == NEW_YEAR.utcoffset()
    assert value.tzinfo is UTC


def test_fractional_seconds_are_kept() -> None:
    value = _only('create_time >= "2024-01-01T00:00:00.250Z"').value
    assert value == datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'labels.k = "say \"hi\""', 'say "hi"'),
        (r'labels.k = "back\\slash"', "back\\slash"),
        (r'labels.k = "a\nb"', "anb"),  # an escaped letter is that letter
        ('labels.k = "a=b<c>d!e:f(g)h"', "a=b<c>d!e:f(g)h"),
        ('labels.k = "AND"', "AND"),
        ('labels.k = "x OR y"', "x OR y"),
    ],
)
def test_quoted_strings(text: str, value: str) -> None:
    assert _only(text).value == value


def test_and_chain_keeps_order() -> None:
    parsed = parse_filter(
        "done = false AND metadata.state = RUNNING AND labels.env = prod"
        ' AND metadata.job_type = "export" AND create_time < "2024-01-01T00:00:00Z"'
    )
    assert parsed.conditions == (
        Condition(Field.DONE, Op.EQ, False),
        Condition(Field.STATE, Op.EQ, State.RUNNING),
        Condition(Field.LABEL, Op.EQ, "prod", "env"),
        Condition(Field.JOB_TYPE, Op.EQ, "export"),
        Condition(Field.CREATE_TIME, Op.LT, NEW_YEAR),
    )


def test_a_time_range_is_two_conditions() -> None:
    parsed = parse_filter(
        'create_time >= "2024-01-01T00:00:00Z" AND create_time < "2024-02-01T00:00:00Z"'
    )
    assert [c.op for c in parsed.conditions] == [Op.GE, Op.LT]
    assert parsed.conditions[1].value == datetime(2024, 2, 1, tzinfo=UTC)


def test_a_value_may_be_an_and_keyword_when_in_value_position() -> None:
    # The third token of a comparison is always its value.
    assert _only("metadata.job_type = AND") == Condition(Field.JOB_TYPE, Op.EQ, "AND")


def test_longest_allowed_filter_is_accepted() -> None:
    text = "labels.k = " + "v" * (MAX_FILTER_LENGTH - len("labels.k = "))
    assert len(text) == MAX_FILTER_LENGTH
    assert _only(text).value == "v" * (MAX_FILTER_LENGTH - len("labels.k = "))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name = x", id="unknown-field"),
        pytest.param("metadata.name = x", id="unknown-metadata-field"),
        pytest.param("update_time > x", id="unknown-time-field"),
        pytest.param("state = RUNNING", id="state-without-metadata"),
        pytest.param("job_type = x", id="job-type-without-metadata"),
        pytest.param("labels = x", id="labels-without-key"),
        pytest.param("labels. = x", id="labels-empty-key"),
        pytest.param("metadata.labels. = x", id="metadata-labels-empty-key"),
        pytest.param("Done = true", id="field-case"),
        pytest.param('"done" = true', id="quoted-field"),
    ],
)
def test_unknown_fields_are_refused(text: str) -> None:
    _refused(text)


def test_unknown_field_message_names_the_field() -> None:
    error = _refused("colour = red")
    assert "colour" in error.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("done = true OR done = false", id="or"),
        pytest.param("labels.a = x AND labels.b = y OR labels.c = z", id="or-after-and"),
        pytest.param("NOT done = true", id="not-prefix"),
        pytest.param("done = true AND NOT labels.a = x", id="not-after-and"),
        pytest.param("-done = true", id="minus-negation"),
        pytest.param("(done = true)", id="parens"),
        pytest.param("done = true AND (labels.a = x)", id="parens-after-and"),
        pytest.param("done = (true)", id="paren-value"),
        pytest.param("done = true)", id="stray-close-paren"),
        pytest.param("labels:env", id="has-operator"),
        pytest.param("labels.env : prod", id="has-operator-on-label"),
        pytest.param("labels.env:*", id="has-star"),
        pytest.param("done = true and done = false", id="lowercase-and"),
        pytest.param("done = true done = false", id="missing-and"),
        pytest.param("done = true AND AND done = false", id="double-and"),
        pytest.param("AND done = true", id="leading-and"),
        pytest.param("OR done = true", id="leading-or"),
    ],
)
def test_unsupported_syntax_is_refused(text: str) -> None:
    _refused(text)


def test_or_gets_a_helpful_message() -> None:
    assert "OR is not supported" in _refused("done = true OR done = false").message


@pytest.mark.parametrize("optext", ["<", "<=", ">", ">="])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("done", "true"),
        ("metadata.state", "RUNNING"),
        ("metadata.job_type", "x"),
        ("labels.env", "x"),
        ("metadata.labels.env", "x"),
    ],
)
def test_ordering_is_refused_on_non_time_fields(field: str, value: str, optext: str) -> None:
    error = _refused(f"{field} {optext} {value}")
    assert "only = and !=" in error.message


@pytest.mark.parametrize("value", ["True", "FALSE", "1", "0", "yes", '""', "tru"])
def test_bad_booleans_are_refused(value: str) -> None:
    _refused(f"done = {value}")


@pytest.mark.parametrize(
    "value", ["queued", "Running", "DONE", "PENDING", "STATE_UNSPECIFIED", '""']
)
def test_unknown_states_are_refused(value: str) -> None:
    _refused(f"metadata.state = {value}")


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("2024-01-01T00:00:00", id="no-zone"),
        pytest.param("2024-01-01", id="date-only"),
        pytest.param("2024-01-01 00:00:00", id="space-no-zone"),
    ],
)
def test_timestamps_without_zone_are_refused(stamp: str) -> None:
    assert "time zone" in _refused(f'create_time > "{stamp}"').message


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("yesterday", id="word"),
        pytest.param("", id="empty"),
        pytest.param("2024-13-01T00:00:00Z", id="month-13"),
        pytest.param("2024-01-32T00:00:00Z", id="day-32"),
        pytest.param("2024-01-01T25:00:00Z", id="hour-25"),
        pytest.param("1704067200", id="epoch-seconds"),
    ],
)
def test_unparseable_timestamps_are_refused(stamp: str) -> None:
    _refused(f'create_time > "{stamp}"')


def test_unquoted_timestamp_with_time_is_refused() -> None:
    # `:` is the has-operator, so a timestamp with a time of day must be quoted.
    _refused("create_time > 2024-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("done", id="field-only"),
        pytest.param("done =", id="no-value"),
        pytest.param("done = =", id="operator-as-value"),
        pytest.param("= true", id="no-field"),
        pytest.param("done true", id="no-operator"),
        pytest.param("done = true AND", id="trailing-and"),
        pytest.param("done = true AND labels.a", id="trailing-field"),
        pytest.param("done = true AND labels.a =", id="trailing-operator"),
        pytest.param("done ! true", id="bang-alone"),
        pytest.param("done == true", id="double-equals"),
        pytest.param("done =< true", id="reversed-le"),
        pytest.param('labels.a = "unterminated', id="unterminated-string"),
        pytest.param('labels.a = "x" "y"', id="two-values"),
    ],
)
def test_dangling_and_malformed_input_is_refused(text: str) -> None:
    _refused(text)


def test_over_long_filter_is_refused() -> None:
    text = "labels.k = " + "v" * MAX_FILTER_LENGTH
    assert str(MAX_FILTER_LENGTH) in _refused(text).message


def test_over_long_whitespace_is_still_refused() -> None:
    # The length check comes before anything is read.
    _refused(" " * (MAX_FILTER_LENGTH + 1))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("done = true", "done=true"),
        ("done = true", 'done = "true"'),
        ("labels.env = prod", "metadata.labels.env = prod"),
        ("labels.env = prod", 'labels.env = "prod"'),
        ('create_time > "2024-01-01T00:00:00Z"', 'metadata.create_time > "2024-01-01T00:00:00Z"'),
        ('create_time > "2024-01-01T00:00:00Z"', 'create_time > "2024-01-01T01:00:00+01:00"'),
        ("", "   "),
    ],
)
def test_digest_is_equal_for_equal_filters(first: str, second: str) -> None:
    assert parse_filter(first) == parse_filter(second)
    assert parse_filter(first).digest() == parse_filter(second).digest()


def test_digest_is_stable() -> None:
    text = "done = false AND labels.env = prod"
    digest = parse_filter(text).digest()
    assert digest == parse_filter(text).digest()
    assert len(digest) == 16
    int(digest, 16)  # hexadecimal


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("done = true", "done = false"),
        ("done = true", "done != true"),
        ("", "done = true"),
        ("labels.env = prod", "labels.env = dev"),
        ("labels.env = prod", "labels.tier = prod"),
        ("labels.env = prod", "metadata.job_type = prod"),
        ("metadata.state = QUEUED", "metadata.state = RUNNING"),
        ('create_time > "2024-01-01T00:00:00Z"', 'create_time >= "2024-01-01T00:00:00Z"'),
        ('create_time > "2024-01-01T00:00:00Z"', 'create_time > "2024-01-01T00:00:01Z"'),
        ("done = true", "done = true AND labels.env = prod"),
        ('labels.a = "true"', "labels.a = True"),
    ],
)
def test_digest_differs_for_different_filters(first: str, second: str) -> None:
    assert parse_filter(first).digest() != parse_filter(second).digest()
