"""Operation ids and operation names."""

from __future__ import annotations

import base64
import re
import secrets

import pytest

from lrod.domain.errors import Code, InvalidArgument
from lrod.domain.names import new_operation_id, new_operation_ids, parse_operation_name
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


def test_ids_made_together_are_made_as_one_is() -> None:
    ids = new_operation_ids(1000)
    assert len(set(ids)) == 1000
    assert all(URL_SAFE_22.fullmatch(i) for i in ids)
    # Every id is all 16 of its own bytes: decodes back to 16 bytes, none shared.
    raw = [base64.urlsafe_b64decode(i + "==") for i in ids]
    assert {len(r) for r in raw} == {16}
    assert new_operation_ids(0) == []


def test_new_ids_never_begin_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shell argument that begins with "-" is read as an option (`lrod get
    # -2Xh...` failed with "No such option '-2'"): such a draw is drawn again.
    dash = bytes([0xF8]) + bytes(15)  # top six bits 62: base64url "-"
    assert base64.urlsafe_b64encode(dash).startswith(b"-")
    plain = bytes([0x04]) + bytes(15)
    draws = iter([dash, dash, plain])
    monkeypatch.setattr(secrets, "token_bytes", lambda n: next(draws))
    assert new_operation_id() == base64.urlsafe_b64encode(plain)[:22].decode()
    draws = iter([plain + dash + plain, plain])
    assert [i[0] for i in new_operation_ids(3)] == ["B", "B", "B"]
    monkeypatch.undo()
    assert not any(i.startswith("-") for i in new_operation_ids(6400))
    assert not any(new_operation_id().startswith("-") for _ in range(6400))


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
