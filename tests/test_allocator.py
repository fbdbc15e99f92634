"""The allocator setting a build runs under: large freed tensors stay in the process while a stage runs (no page
faults when the next batch allocates the same sizes) and go back to the OS between stages."""

import subprocess
import sys

import pytest

from qreport.allocator import KEEP_BELOW, KEEP_FREE, _glibc

PROBE = """
import os, torch
from qreport.allocator import keep_freed_blocks, release_freed_blocks
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
def after_free():
    base = rss()
    t = torch.ones(48 * 2**20 // 4)  # a 48 MiB tensor (mobilenet_v2's largest activation at batch 8 is 38.5 MB)
    del t
    return rss() - base
after_free()  # torch's first ops set up its thread pools and allocator state: measure after them
default = after_free()
assert keep_freed_blocks()
kept = after_free()
base = rss()
release_freed_blocks()
print(default, kept, base - rss())
"""


@pytest.mark.skipif(_glibc() is None or not sys.platform.startswith("linux"), reason="glibc on Linux")
def test_large_freed_tensors_stay_for_reuse_until_released():
    """glibc's default maps every block above 32 MiB afresh and unmaps it when freed (a freed 48 MiB tensor leaves
    nothing resident); with the build's setting it stays, and ``release_freed_blocks`` hands it back."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    default, kept, released = (int(v) / 2**20 for v in out)
    assert default < 4, "glibc now keeps large freed blocks by default: keep_freed_blocks may no longer be needed"
    assert kept > 40 and released > 40
    assert 48 < KEEP_BELOW / 2**20 <= KEEP_FREE / 2**20
