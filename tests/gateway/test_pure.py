"""The gateway's bytes and decisions are pure: model, frames, registry and http do no I/O and
import no trio (the check of tests/test_layering.py, applied to them)."""

from __future__ import annotations

import pathlib

import pytest
from test_layering import test_pure_module_has_no_io as check_pure

GATEWAY = pathlib.Path(__file__).resolve().parents[2] / "fluvial" / "gateway"


@pytest.mark.parametrize("name", ["model.py", "frames.py", "registry.py", "http.py"])
def test_gateway_pure_modules_have_no_io(name):
    check_pure(GATEWAY / name)
