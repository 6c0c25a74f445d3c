"""The mutation table (tests/mutations.py) stays true to the code it breaks.

Each entry names its code by a snippet that must occur exactly once in its file, and the tests
that must go red. When the code changes under an entry, the script says so only when someone
runs that entry; meanwhile the table lists a mutation that tests nothing (two entries had gone
stale that way between runs). These checks read files only, so the suite keeps the table honest
on every run: every snippet is found once, the names are unique, and every named test exists.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@cache
def table() -> list:
    spec = importlib.util.spec_from_file_location("mutation_table", ROOT / "tests" / "mutations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module.MUTATIONS


@cache
def defined_tests(path: str) -> frozenset[str]:
    """``Class::test`` and ``test`` names defined in the test file ``path``."""
    tree = ast.parse((ROOT / path).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return frozenset(names)


def missing_test(node_id: str) -> str | None:
    """Why pytest node id ``node_id`` names no test, or None."""
    path, _, name = node_id.partition("::")
    if not (ROOT / path).is_file():
        return f"no file {path}"
    if not name:
        return None  # a whole file
    name = name.split("[", 1)[0]  # a parametrized test: its function
    if name not in defined_tests(path):
        return f"no test {name} in {path}"
    return None


def test_every_snippet_occurs_once_in_its_file():
    stale = [f"{m.name}: found {(ROOT / m.path).read_text().count(m.old)} times in {m.path}"
             for m in table()
             if not (ROOT / m.path).is_file() or (ROOT / m.path).read_text().count(m.old) != 1]
    assert stale == [], "update these entries of tests/mutations.py to the current code"


def test_every_named_test_exists_and_names_are_unique():
    mutations = table()
    names = [m.name for m in mutations]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    gone = [f"{m.name}: {why}" for m in mutations for t in m.tests
            if (why := missing_test(t)) is not None]
    assert all(m.tests for m in mutations)
    assert gone == []
