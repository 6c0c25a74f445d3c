"""The ```python example of docs/smartmodules.md runs against an in-process cluster, with the
WAT-built modules it names in its working directory, and prints what its comments say."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import trio

from fluvial.client import profile
from smartmodule.modules import write_wasm

DOC = Path(__file__).resolve().parents[2] / "docs" / "smartmodules.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
EXPECTED = re.compile(r"print\(.*\)[ \t]+# (.+)$", re.M)


async def test_the_python_example_runs_and_prints_what_it_says(cluster, tmp_path):
    examples = BLOCK.findall(DOC.read_text())
    assert examples
    work = tmp_path / "work"
    work.mkdir()
    for name in ("map", "filter", "aggregate"):
        write_wasm(name, work)
    home = tmp_path / "home"
    profile.add_profile("local", cluster.endpoint, path=home / "config")
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    env.pop("FLUVIAL_CONFIG", None)
    for code in examples:
        with trio.fail_after(30):
            proc = await trio.run_process([sys.executable, "-c", code], env=env, cwd=work, check=False,
                                          capture_stdout=True, capture_stderr=True)
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        expected = EXPECTED.findall(code)
        assert expected
        for line in expected:
            assert line.strip() in out, (line, out)
