"""The console's colours meet WCAG AA contrast (4.5:1 for text), read from
its stylesheet: body text, muted text, links, the header, buttons and every
state badge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lrod.console

CSS = (Path(lrod.console.__file__).parent / "static" / "console.css").read_text()
WHITE = "#fff"


def _variable(name: str) -> str:
    match = re.search(rf"--{name}:\s*(#[0-9a-fA-F]{{3,6}})", CSS)
    assert match, name
    return match.group(1)


def _luminance(colour: str) -> float:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _badges() -> list[tuple[str, str, str]]:
    found = re.findall(
        r"(\.state[^{]*)\{[^}]*background:\s*(#[0-9a-fA-F]+);\s*color:\s*(#[0-9a-fA-F]+)", CSS
    )
    assert len(found) >= 5
    return [(selector.strip(), background, colour) for selector, background, colour in found]


PAIRS = [
    ("text", _variable("fg"), _variable("bg")),
    ("muted text", _variable("muted"), _variable("bg")),
    ("links", _variable("link"), _variable("bg")),
    ("links on table heads", _variable("link"), _variable("head")),
    ("failed counts", _variable("bad"), _variable("bg")),
    ("header and buttons", WHITE, "#12263f"),
    ("danger buttons", WHITE, _variable("bad")),
    *_badges(),
]


@pytest.mark.parametrize(("what", "foreground", "background"), PAIRS)
def test_text_contrast_is_at_least_aa(what: str, foreground: str, background: str) -> None:
    assert contrast(foreground, background) >= 4.5, what
