"""The C allocator's handling of large freed blocks, on glibc (elsewhere these do nothing).

glibc hands every block above its mmap threshold (at most 32 MiB, however it adapts) back to the OS when it is
freed, so the next tensor of that size is faulted in page by page: at batch 8 a float forward of mobilenet_v2 spent
more than half its time there (README: Performance). A build keeps such blocks for re-use while a stage runs and
gives them back between stages, so the peak stays that of the stage that needs most.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

KEEP_BELOW = 64 * 2**20  # blocks up to this size come from the re-usable heap, larger ones are mapped as before
KEEP_FREE = 128 * 2**20  # free memory the heap keeps at its top (glibc's adaptive setting goes to 64 MiB)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


@functools.cache
def _glibc():
    """The C library when it is glibc, else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_blocks() -> bool:
    """Keep freed blocks up to ``KEEP_BELOW`` in the process for re-use, and up to ``KEEP_FREE`` of free memory
    (process-wide; glibc then stops adapting its thresholds). Returns whether the allocator took the settings."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREE))


def release_freed_blocks() -> None:
    """Give the freed blocks the process keeps back to the OS (between stages)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
