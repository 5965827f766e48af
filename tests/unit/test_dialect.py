"""One module tells SQLite from PostgreSQL (lrod.store.dialect; the engine
module builds on it): no other module of lrod branches on the dialect."""

from __future__ import annotations

import ast
from pathlib import Path

import lrod.store.dialect

SRC = Path(lrod.store.dialect.__file__).resolve().parents[1]
ALLOWED = {
    SRC / "store" / "dialect.py",
    # Builds the engines: one constructor per database, from dialect's choices.
    SRC / "store" / "engine.py",
}
# Migration versions keep the DDL they were written with.
HISTORY = SRC / "store" / "migrations" / "versions"
NAMES = {"sqlite", "postgresql"}


def _branches(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in NAMES:
            found.append(f"line {node.lineno}: the name {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr == "get_backend_name":
            found.append(f"line {node.lineno}: get_backend_name")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "name"
            and isinstance(node.value, ast.Name | ast.Attribute)
            and (getattr(node.value, "id", None) or getattr(node.value, "attr", None)) == "dialect"
        ):
            found.append(f"line {node.lineno}: dialect.name")
        elif isinstance(node, ast.keyword) and node.arg in {"sqlite_where", "postgresql_where"}:
            found.append(f"line {getattr(node, 'lineno', '?')}: {node.arg}")
    return found


def test_no_module_but_the_dialect_one_branches_on_the_database() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        if path in ALLOWED or HISTORY in path.parents:
            continue
        found = _branches(ast.parse(path.read_text(), str(path)))
        if found:
            offenders[str(path.relative_to(SRC))] = found
    assert offenders == {}


def test_the_check_sees_a_branch() -> None:
    sample = 'if url.get_backend_name() == "sqlite" or conn.dialect.name == x: pass'
    assert len(_branches(ast.parse(sample))) == 3
    index = 'Index("i", "c", postgresql_where=text("c > 0"))'
    assert _branches(ast.parse(index)) == ["line 1: postgresql_where"]
