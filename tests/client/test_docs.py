"""Every ```python example of docs/client.md runs, in order, against a local cluster.

Each example is a whole program; it runs in a subprocess whose current profile points at an
in-process cluster served by this test's trio loop. A ``print(...)  # expected`` line must print
``expected`` (comments holding ``...`` are left unchecked).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import trio

from fluvial.client import profile

from .conftest import TEST_TIMEOUT

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
EXPECTED = re.compile(r"print\(.*\)[ \t]+# (.+)$", re.M)


def examples() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def test_the_doc_has_examples():
    assert len(examples()) >= 6


async def test_every_example_runs_and_prints_what_it_says(cluster, tmp_path):
    home = tmp_path / "home"
    profile.add_profile("local", cluster.endpoint, path=home / "config")
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    env.pop("FLUVIAL_CONFIG", None)
    for i, code in enumerate(examples()):
        with trio.fail_after(TEST_TIMEOUT):
            proc = await trio.run_process([sys.executable, "-c", code], env=env, check=False,
                                          capture_stdout=True, capture_stderr=True)
        out = proc.stdout.decode()
        assert proc.returncode == 0, f"example {i + 1} failed:\n{code}\n{proc.stderr.decode()[-3000:]}"
        for expected in EXPECTED.findall(code):
            if "..." not in expected:
                assert expected.strip() in out, f"example {i + 1} should print {expected!r}:\n{out}"
