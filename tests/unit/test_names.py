"""Operation ids and operation names."""

from __future__ import annotations

import base64
import re
import secrets
import time

import pytest

from lrod.domain.errors import Code, InvalidArgument
from lrod.domain.names import (
    new_operation_id,
    new_operation_ids,
    parse_operation_name,
    time_prefix,
)
from lrod.domain.operation import OPERATION_PREFIX

URL_SAFE_22 = re.compile(r"[A-Za-z0-9_-]{22}")
VALID_ID = "abcDEF012_-abcDEF012_-"


def _malformed(name: str, field: str = "name") -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse_operation_name(name, field)
    error = caught.value
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason == "MALFORMED_NAME"
    assert [(v.field, v.reason) for v in error.violations] == [(field, "MALFORMED_NAME")]
    return error


def test_new_ids_are_22_url_safe_characters() -> None:
    for _ in range(200):
        assert URL_SAFE_22.fullmatch(new_operation_id())


def test_ids_made_together_are_made_as_one_is(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = new_operation_ids(1000)
    assert len(set(ids)) == 1000
    assert all(URL_SAFE_22.fullmatch(i) for i in ids)
    # One millisecond's prefix, then each id's own 78 random bits: 10 bytes
    # of the draw each, none shared.
    assert len({i[:9] for i in ids}) == 1
    draw = bytes(range(30))
    monkeypatch.setattr(secrets, "token_bytes", lambda n: draw[:n])
    made = new_operation_ids(3)
    for index, op_id in enumerate(made):
        part = draw[10 * index : 10 * index + 10]
        assert op_id[9:] == base64.urlsafe_b64encode(part)[:13].decode()
    assert new_operation_ids(0) == []


def test_ids_sort_in_the_order_they_were_made(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_796_000_000_000  # December 2026, in milliseconds
    moments = sorted({0, 1, 31, 32, 1023, 1024, 2**40, now - 1, now, now + 1, 2**45 - 1})
    prefixes = [time_prefix(ms) for ms in moments]
    assert all(len(p) == 9 and re.fullmatch(r"[0-9a-v]{9}", p) for p in prefixes)
    assert [int(p, 32) for p in prefixes] == moments  # base 32, digits 0-9a-v
    assert prefixes == sorted(prefixes)
    assert len(set(prefixes)) == len(prefixes)
    # Whole ids: a later millisecond sorts after, whatever the random part.
    clock = iter([now * 1_000_000, (now + 1) * 1_000_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    draws = iter([b"\xff" * 10, b"\x00" * 10])
    monkeypatch.setattr(secrets, "token_bytes", lambda n: next(draws))
    first, second = new_operation_id(), new_operation_id()
    assert first[9:] > second[9:]
    assert first < second


def test_new_ids_never_begin_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shell argument that begins with "-" is read as an option (`lrod get
    # -2Xh...` failed with "No such option '-2'"): a new id begins with its
    # time prefix, a digit until the year 3084, whatever its random part.
    monkeypatch.setattr(secrets, "token_bytes", lambda n: bytes([0xF8]) * n)
    assert base64.urlsafe_b64encode(bytes([0xF8]) * 10).startswith(b"-")
    assert new_operation_id()[0].isdigit()
    monkeypatch.undo()
    assert all(i[0].isdigit() for i in new_operation_ids(6400))


def test_new_ids_are_unique() -> None:
    ids = {new_operation_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_new_ids_parse_back() -> None:
    op_id = new_operation_id()
    assert parse_operation_name(OPERATION_PREFIX + op_id) == op_id


def test_prefix() -> None:
    assert OPERATION_PREFIX == "operations/"


@pytest.mark.parametrize("op_id", [VALID_ID, "A" * 22, "-" * 22, "_" * 22, "0" * 22])
def test_parse_accepts_operations_id(op_id: str) -> None:
    assert parse_operation_name(f"operations/{op_id}") == op_id


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param(VALID_ID, id="bare-id"),
        pytest.param(f"operation/{VALID_ID}", id="singular"),
        pytest.param(f"Operations/{VALID_ID}", id="capitalised"),
        pytest.param(f"/operations/{VALID_ID}", id="leading-slash"),
        pytest.param(f" operations/{VALID_ID}", id="leading-space"),
        pytest.param(f"projects/p/operations/{VALID_ID}", id="nested"),
        pytest.param(f"jobs/{VALID_ID}", id="other-collection"),
        pytest.param("operations", id="collection-only"),
    ],
)
def test_parse_refuses_other_prefixes(name: str) -> None:
    error = _malformed(name)
    assert "operations/{id}" in error.violations[0].description


@pytest.mark.parametrize(
    "op_id",
    [
        pytest.param("", id="empty-id"),
        pytest.param(VALID_ID[:21], id="21-chars"),
        pytest.param(VALID_ID + "a", id="23-chars"),
        pytest.param("a" * 44, id="44-chars"),
        pytest.param("a" * 21 + "+", id="plus"),
        pytest.param("a" * 21 + "/", id="slash"),
        pytest.param("a" * 21 + "=", id="padding"),
        pytest.param("a" * 21 + ".", id="dot"),
        pytest.param("a" * 21 + " ", id="trailing-space"),
        pytest.param("a" * 21 + "\n", id="trailing-newline"),
        pytest.param("a" * 21 + "é", id="non-ascii"),
        pytest.param("a" * 21 + "%", id="percent"),
        pytest.param(f"{VALID_ID[:11]}/{VALID_ID[:10]}", id="inner-slash"),
    ],
)
def test_parse_refuses_malformed_ids(op_id: str) -> None:
    error = _malformed(OPERATION_PREFIX + op_id)
    assert "malformed" in error.violations[0].description


def test_violation_names_the_request_field() -> None:
    _malformed("nope", field="operation.name")
    _malformed("operations/short", field="operation.name")
