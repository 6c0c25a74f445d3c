"""The C allocator's settings for fluvial's server processes (glibc only).

A server moves large buffers through short-lived ``bytes`` objects: a produce request of a
megabyte is read from the socket (one ``recv`` buffer of up to 4 MiB, shrunk to what arrived),
joined into one payload and its record set cut out of it. With glibc's defaults each of those
buffers is new memory: an allocation above the mmap threshold gets a fresh ``mmap`` (the
threshold adapts only to sizes freed before, and a shrunk ``recv`` buffer keeps it low), and
free memory at the top of the heap goes back to the kernel once more than twice that threshold
is free. The kernel then zeroes and maps every page again on first touch: about 256 minor page
faults per MB produced, measured on the SPU with ``/proc/PID/stat``, and a quarter to a third
of the SPU's CPU time for large records.

``keep_freed_memory()`` fixes both thresholds (``mallopt``): allocations up to 32 MiB (glibc's
largest mmap threshold on 64-bit) come from the heap, and up to 64 MiB of freed heap stay in the
process for the next request instead of going back to the kernel. The cost is memory: a server's
resident size stays at its peak (bounded by what it allocated at once, plus 64 MiB) instead of
shrinking between bursts. The servers call it at start (``fluvial run sc|spu|processors``); the
client library never changes its host process's allocator.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set the thresholds above for this process. Returns whether they were set: False where the
    C library is not glibc (nothing is changed there)."""
    try:  # glibc says so without reading a file (platform.libc_ver scans the executable)
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (ValueError, OSError, AttributeError):  # no such name, no C library to ask
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
