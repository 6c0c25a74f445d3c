"""The pure packages import no trio, socket or ssl and do no file I/O (STYLE.md, "The one idea")."""

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
