"""Page sizes and page tokens bound to their query."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lrod.domain.errors import Code, InvalidArgument
from lrod.domain.filters import parse_filter
from lrod.domain.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Cursor,
    decode_page_token,
    encode_page_token,
    page_size,
)

BINDING = parse_filter("done = false").digest()
OTHER_BINDING = parse_filter("done = true").digest()
CURSOR = Cursor(datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), "AAAAAAAAAAAAAAAAAAAAAA")
KEY = b"k" * 32


def _refused_token(token: str, binding: str = BINDING) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token, binding, KEY)
    error = caught.value
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in error.violations] == ["page_token"]
    assert error.violations[0].reason == "INVALID_PAGE_TOKEN"
    return error


def _body(token: str) -> dict[str, object]:
    token = token.partition(".")[0]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    body = json.loads(raw)
    assert isinstance(body, dict)
    return body


def _token(body: object, key: bytes = KEY) -> str:
    """A token signed with `key`: what a forger holding the key could make."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    tag = hmac.new(key, text.encode(), hashlib.sha256).digest()[:16]
    return f"{text}.{base64.urlsafe_b64encode(tag).decode().rstrip('=')}"


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        (0, DEFAULT_PAGE_SIZE),
        (1, 1),
        (7, 7),
        (DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE),
        (MAX_PAGE_SIZE - 1, MAX_PAGE_SIZE - 1),
        (MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE),
        (2**31 - 1, MAX_PAGE_SIZE),
    ],
)
def test_page_size(requested: int, granted: int) -> None:
    assert page_size(requested) == granted


def test_page_size_limits_are_sane() -> None:
    assert 0 < DEFAULT_PAGE_SIZE <= MAX_PAGE_SIZE


@pytest.mark.parametrize("requested", [-1, -50, -(2**31)])
def test_negative_page_size_is_refused(requested: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_size(requested)
    assert caught.value.reason == "INVALID_PAGE_SIZE"
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.violations] == ["page_size"]


@pytest.mark.parametrize(
    "cursor",
    [
        CURSOR,
        Cursor(datetime(2024, 1, 1, tzinfo=UTC), "abc_DEF-123abc_DEF-1234"),
        Cursor(datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))), "x"),
        Cursor(datetime(1970, 1, 1, tzinfo=UTC), ""),
    ],
)
def test_token_round_trip(cursor: Cursor) -> None:
    token = encode_page_token(cursor, BINDING, KEY)
    decoded = decode_page_token(token, BINDING, KEY)
    assert decoded == cursor
    assert decoded is not None
    assert decoded.create_time.utcoffset() == timedelta(0)


def test_token_is_url_safe_and_unpadded() -> None:
    token = encode_page_token(CURSOR, BINDING, KEY)
    assert token
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_equal_cursors_give_equal_tokens() -> None:
    assert encode_page_token(CURSOR, BINDING, KEY) == encode_page_token(
        Cursor(CURSOR.create_time, CURSOR.id), BINDING, KEY
    )


def test_different_cursors_give_different_tokens() -> None:
    later = Cursor(CURSOR.create_time + timedelta(microseconds=1), CURSOR.id)
    assert encode_page_token(CURSOR, BINDING, KEY) != encode_page_token(later, BINDING, KEY)


def test_empty_token_is_the_first_page() -> None:
    assert decode_page_token("", BINDING, KEY) is None
    assert decode_page_token("", OTHER_BINDING, KEY) is None


def test_token_for_another_filter_is_refused() -> None:
    token = encode_page_token(CURSOR, OTHER_BINDING, KEY)
    error = _refused_token(token, BINDING)
    assert "different filter" in error.violations[0].description


def test_binding_survives_the_round_trip_only_for_its_own_filter() -> None:
    token = encode_page_token(CURSOR, BINDING, KEY)
    assert decode_page_token(token, BINDING, KEY) == CURSOR
    _refused_token(token, OTHER_BINDING)
    _refused_token(token, "")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="word"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param("a", id="one-char"),
        pytest.param("aGVsbG8", id="base64-not-json"),
        pytest.param("////", id="binary"),
        pytest.param(_token([1, 2, 3]), id="json-list"),
        pytest.param(_token(42), id="json-number"),
        pytest.param(_token("x"), id="json-string"),
        pytest.param(_token({}), id="json-empty-object"),
        pytest.param(_token({"t": "2024-01-01T00:00:00+00:00", "i": "x"}), id="no-binding"),
        pytest.param(_token({"i": "x", "b": BINDING}), id="no-time"),
        pytest.param(_token({"t": "2024-01-01T00:00:00+00:00", "b": BINDING}), id="no-id"),
        pytest.param(_token({"t": "yesterday", "i": "x", "b": BINDING}), id="bad-time"),
        pytest.param(_token({"t": 1704067200, "i": "x", "b": BINDING}), id="numeric-time"),
        pytest.param(_token({"t": None, "i": "x", "b": BINDING}), id="null-time"),
    ],
)
def test_garbage_token_is_refused(token: str) -> None:
    _refused_token(token)


def _flip_first(token: str) -> str:
    return ("A" if token[0] != "A" else "B") + token[1:]


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda t: t[: len(t) // 2], id="truncated"),
        pytest.param(lambda t: t[:-5], id="tail-cut"),
        pytest.param(lambda t: t + "AAAA", id="extended"),
        pytest.param(lambda t: "AAAA" + t, id="prefixed"),
        pytest.param(_flip_first, id="first-char-flipped"),
    ],
)
def test_altered_token_is_refused(alter: Callable[[str], str]) -> None:
    token = encode_page_token(CURSOR, BINDING, KEY)
    altered = alter(token)
    assert altered != token
    _refused_token(altered)


def test_token_rebound_to_another_filter_is_refused() -> None:
    body = _body(encode_page_token(CURSOR, BINDING, KEY))
    body["b"] = "another-filter"
    _refused_token(_token(body, key=b"not the server's key"))
    _refused_token(_token(body))


def test_a_token_without_the_servers_key_is_refused() -> None:
    # A forger without the key: a well-formed cursor, bound to this filter.
    body = _body(encode_page_token(CURSOR, BINDING, KEY))
    _refused_token(_token(body, key=b"guess"))
    _refused_token(encode_page_token(CURSOR, BINDING, b"another database's key"))
    _refused_token(encode_page_token(CURSOR, BINDING, KEY).partition(".")[0])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"t": "2024-01-01T00:00:00", "i": "x", "b": BINDING}, id="naive-time"),
        pytest.param({"t": "0001-01-01T00:00:00+01:00", "i": "x", "b": BINDING}, id="year-1"),
        pytest.param({"t": "9999-12-31T23:59:59-01:00", "i": "x", "b": BINDING}, id="year-10000"),
        pytest.param({"t": "2024-01-01T00:00:00Z", "i": 5, "b": BINDING}, id="numeric-id"),
        pytest.param({"t": "2024-01-01T00:00:00Z", "i": "x\u0000", "b": BINDING}, id="nul-id"),
        pytest.param(b"[" * 100000 + b"]" * 100000, id="deeply-nested"),
    ],
)
def test_signed_but_invalid_cursors_are_refused(body: object) -> None:
    # Even with the key (a bug, a leaked key), only a valid cursor passes.
    _refused_token(_token(body))
