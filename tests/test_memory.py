"""freemask.memory: glibc's freed heap pages go back to the OS; the arena limit is validated."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from freemask import memory

SRC = Path(__file__).resolve().parents[1] / "src"
glibc_only = pytest.mark.skipif(memory._glibc() is None, reason="malloc_trim and mallopt are glibc functions")

# In a fresh process: 1 MiB blocks from the heap (not mmap), free() never trims by itself, and a
# small block pinned after each big one, so the big ones' pages stay resident once freed.
FRAGMENTED_HEAP = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from freemask import memory

    def rss_mib():
        line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    libc = memory._glibc()
    assert libc.mallopt(-3, 64 << 20) == 1 and libc.mallopt(-1, 1 << 30) == 1  # M_MMAP_/M_TRIM_THRESHOLD
    big, pins = [], []
    for _ in range(200):
        big.append(bytearray(1 << 20))
        pins.append(bytearray(64))
    del big
    before = rss_mib()
    done = memory.release_free_memory()
    print(done, before - rss_mib())
""")


@glibc_only
def test_release_free_memory_gives_freed_heap_pages_back():
    out = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP, str(SRC)], capture_output=True, text=True, check=True)
    done, released_mib = out.stdout.split()
    assert done == "True"
    assert float(released_mib) > 150  # of the 200 MiB freed


@glibc_only
def test_limit_malloc_arenas_takes_effect_and_rejects_nonsense():
    assert memory.limit_malloc_arenas(1) is True  # as generate_dataset sets it, in this process too
    with pytest.raises(ValueError, match="malloc arenas must be >= 1, got 0"):
        memory.limit_malloc_arenas(0)


def test_without_glibc_both_report_that_they_did_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.release_free_memory() is False
    assert memory.limit_malloc_arenas(1) is False
