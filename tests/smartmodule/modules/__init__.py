"""The test SmartModules, written in WAT (no binaries in the repo): each ``NAME.wat`` here is a
module body; ``wat(NAME)`` splices it after ``lib.wat`` (the ABI plumbing) and ``wasm(NAME)``
compiles the text with wasmtime."""

from __future__ import annotations

import gzip
from pathlib import Path

import wasmtime

HERE = Path(__file__).parent
GOOD = ("filter", "map", "filter_map", "array_map", "aggregate", "filter_param", "filter_error", "lookback")
HOSTILE = ("no_transform", "infinite_loop", "memory_hog", "garbage", "trap")


def wat(name: str) -> str:
    return f"(module\n{(HERE / 'lib.wat').read_text()}\n{(HERE / (name + '.wat')).read_text()})\n"


def wasm(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat(name)))


def wasm_gz(name: str) -> bytes:
    return gzip.compress(wasm(name))


def write_wasm(name: str, directory: Path) -> Path:
    p = Path(directory) / f"{name}.wasm"
    p.write_bytes(wasm(name))
    return p
