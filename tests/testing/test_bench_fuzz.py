"""bench/fuzz.py runs to the end: its in-process part, amplification probe included, prints its summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def test_the_in_process_part_and_the_amplification_probe_finish():
    proc = subprocess.run([sys.executable, str(BENCH), "--cases", "200", "--jobs", "1", "--skip-live"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    probe = proc.stdout.split("== decode amplification", 1)[1]
    for frame in ("SC List", "SPU FetchOffsets", "SPU Produce", "SC private ReportReplicas"):
        assert frame in probe
    assert "crashes: 0" in proc.stdout
