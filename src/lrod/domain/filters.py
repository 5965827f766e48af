"""The AIP-160 filter subset ListOperations accepts.

    filter     := comparison ("AND" comparison)*
    comparison := field op value
    field      := done | metadata.state | metadata.job_type | labels.KEY
                  | metadata.labels.KEY | create_time | metadata.create_time
    op         := = | != | < | <= | > | >=      (ordering only on create_time)
    value      := word | "quoted string"

Anything else (OR, NOT, parentheses, other fields, has-operators) is refused
with INVALID_ARGUMENT rather than silently ignored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from lrod.domain.errors import FieldViolation, InvalidArgument
from lrod.domain.states import State
from lrod.domain.storable import storable

MAX_FILTER_LENGTH = 2048

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[^\s"=<>!:()]+)
    )""",
    re.VERBOSE,
)


class Field(StrEnum):
    DONE = "done"
    STATE = "metadata.state"
    JOB_TYPE = "metadata.job_type"
    LABEL = "labels"
    CREATE_TIME = "create_time"


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


_ORDERING = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})
FilterValue = bool | State | str | datetime


@dataclass(frozen=True)
class Condition:
    field: Field
    op: Op
    value: FilterValue
    label_key: str = ""


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...] = ()

    def digest(self) -> str:
        """A stable digest of what the filter means, to bind page tokens to it."""
        return hashlib.sha256(repr(self.conditions).encode()).hexdigest()[:16]


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument.of(
        [FieldViolation("filter", description, "INVALID_FILTER")], reason="INVALID_FILTER"
    )


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _invalid(f"cannot read the filter at character {pos + 1}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse_filter(text: str) -> Filter:
    if len(text) > MAX_FILTER_LENGTH:
        raise _invalid(f"at most {MAX_FILTER_LENGTH} characters")
    if not storable(text):
        raise _invalid("must not contain NUL (\\0) characters")
    tokens = _tokens(text)
    if not tokens:
        return Filter()
    conditions: list[Condition] = []
    index = 0
    while True:
        if index + 3 > len(tokens):
            raise _invalid("expected `field op value`")
        conditions.append(_comparison(tokens[index : index + 3]))
        index += 3
        if index == len(tokens):
            return Filter(tuple(conditions))
        kind, word = tokens[index]
        if kind == "word" and word == "OR":
            raise _invalid("OR is not supported; combine conditions with AND")
        if kind != "word" or word != "AND":
            raise _invalid(f"expected AND, found {word!r}")
        index += 1


def _comparison(tokens: list[tuple[str, str]]) -> Condition:
    (fkind, fname), (okind, optext), (vkind, vtext) = tokens
    if fkind != "word":
        raise _invalid("expected a field name")
    if fname in ("NOT", "OR", "AND"):
        raise _invalid(f"{fname} is not supported here")
    if okind != "op" or optext == ":":
        raise _invalid(f"expected a comparison operator after {fname!r}")
    if vkind not in ("word", "string"):
        raise _invalid(f"expected a value after {fname} {optext}")
    op = Op(optext)
    value = _unquote(vtext) if vkind == "string" else vtext
    field, label_key = _field(fname)
    if op in _ORDERING and field is not Field.CREATE_TIME:
        raise _invalid(f"{fname} supports only = and !=")
    return Condition(field, op, _value(field, value), label_key)


def _field(name: str) -> tuple[Field, str]:
    for prefix in ("labels.", "metadata.labels."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return Field.LABEL, name[len(prefix) :]
    aliases = {
        "done": Field.DONE,
        "metadata.state": Field.STATE,
        "metadata.job_type": Field.JOB_TYPE,
        "create_time": Field.CREATE_TIME,
        "metadata.create_time": Field.CREATE_TIME,
    }
    if name not in aliases:
        known = "done, metadata.state, metadata.job_type, labels.KEY, create_time"
        raise _invalid(f"unknown field {name!r}; known: {known}")
    return aliases[name], ""


def _value(field: Field, text: str) -> FilterValue:
    if field is Field.DONE:
        if text not in ("true", "false"):
            raise _invalid("done takes true or false")
        return text == "true"
    if field is Field.STATE:
        try:
            return State(text)
        except ValueError:
            raise _invalid(f"unknown state {text!r}") from None
    if field is Field.CREATE_TIME:
        return _timestamp(text)
    return text


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(f"{text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise _invalid(f"{text!r} needs a time zone, for example Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is before year 1 in UTC (and 9999-12-31
        # at -01:00 after 9999).
        raise _invalid(f"{text!r} is outside the years 1 to 9999 in UTC") from None


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])
