"""Layering: the pure packages do no I/O, and each layer imports only what it may (STYLE.md, "The one idea")."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fluvial"
PURE = ["protocol", "replication", "metadata"]
FORBIDDEN_MODULES = {"trio", "socket", "ssl", "asyncio", "selectors", "io", "shutil", "tempfile"}
FORBIDDEN_CALLS = {"open"}
FORBIDDEN_ATTRS = {("os", "open"), ("os", "read"), ("os", "write"), ("os", "fsync"), ("os", "pread"),
                   ("os", "pwrite"), ("os", "sendfile"), ("pathlib", "Path")}


def _pure_files():
    for pkg in PURE:
        yield from sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", list(_pure_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_has_no_io(path):
    tree = ast.parse(path.read_text(), str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append(node.module)
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                problems.append(f"{f.id}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                if (f.value.id, f.attr) in FORBIDDEN_ATTRS:
                    problems.append(f"{f.value.id}.{f.attr}()")
    assert not problems, f"{path.name} is in a pure package but uses {problems}"


def test_layering_check_catches_an_impure_module(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nopen('x')\n")
    with pytest.raises(AssertionError):
        test_pure_module_has_no_io(bad)


# ----------------------------------------------------------------- who may import what

def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (lazy imports in functions count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _reaches(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


# (files under fluvial/, the modules they may not import, why)
IMPORT_RULES = [
    ("storage/**/*.py", ("trio",), "storage is synchronous file I/O; the SPU runs it in threads"),
    ("client/accumulator.py", ("trio", "socket", "ssl", "asyncio"), "pure batching"),  # its decoder
    # twin moved to protocol/, which test_pure_module_has_no_io guards
    ("auth.py", ("trio", "socket", "ssl", "asyncio"), "a pure policy"),
    ("cli/**/*.py", ("tests", "harness"), "the shipped CLI runs without the test tree"),
    ("sc/**/*.py", ("fluvial.storage",), "the SC keeps metadata, not replicas"),
    ("**/*.py", ("tests", "harness"), "the test harness is not shipped"),
]


def _rule_cases():
    for pattern, forbidden, why in IMPORT_RULES:
        for path in sorted(ROOT.glob(pattern)):
            yield pytest.param(path, forbidden, why, id=f"{pattern}:{path.relative_to(ROOT)}")


@pytest.mark.parametrize(("path", "forbidden", "why"), list(_rule_cases()))
def test_module_imports_only_what_its_layer_may(path, forbidden, why):
    bad = sorted(m for m in _imported_modules(path) if _reaches(m, forbidden))
    assert not bad, f"{path} imports {bad}: {why}"


def test_every_import_rule_matches_files():
    for pattern, _forbidden, _why in IMPORT_RULES:
        assert list(ROOT.glob(pattern)), f"no file matches {pattern}; the rule guards nothing"


def test_import_rules_catch_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from harness.cluster import open_test_cluster\n")
    with pytest.raises(AssertionError):
        test_module_imports_only_what_its_layer_may(bad.resolve(), ("harness",), "test")
