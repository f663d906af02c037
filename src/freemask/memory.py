"""Keep a long batch loop's resident memory from ratcheting up: glibc malloc settings and trimming.

glibc's malloc keeps memory a process has freed, to hand it out again. In a loop that allocates
and frees hundreds of MiB per batch (the generate stage's UNet activations and attention maps),
what it keeps grows with fragmentation, while the work per batch stays the same. Two things stop
that:

- ``limit_malloc_arenas(1)``: the torch worker threads allocate from the main heap instead of
  arenas of their own, whose free space the other threads cannot reuse;
- ``release_free_memory()`` after each batch: ``malloc_trim(0)`` gives every free page back.

Within a batch, the step that records self-attention holds the explicit maps and the layers'
activations at once, and how many freed heap pages stay resident depends on where glibc placed
each tensor; ``attention.recording`` therefore calls ``release_free_memory()`` before each
attention layer of those steps. The measurements behind both are in
docs/decisions.md#capture-memory-and-speed.

``malloc_trim`` and ``mallopt`` are glibc functions; on another C library (musl, macOS,
Windows) both calls do nothing and return False, since that allocator is not the one measured.
"""
from __future__ import annotations

import ctypes
import functools
import sys

M_ARENA_MAX = -8  # glibc malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has ``malloc_trim`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the symbols already loaded into this process
    if not all(hasattr(libc, f) for f in ("malloc_trim", "mallopt", "gnu_get_libc_version")):
        return None
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


def limit_malloc_arenas(n: int) -> bool:
    """At most ``n`` malloc arenas from now on (threads that have one keep it: call this before the
    work starts threads). Returns whether the setting took effect (False: not glibc)."""
    if n < 1:
        raise ValueError(f"malloc arenas must be >= 1, got {n}")
    libc = _glibc()
    if libc is None:
        return False
    if libc.mallopt(M_ARENA_MAX, n) != 1:
        raise OSError(f"mallopt(M_ARENA_MAX, {n}) failed")
    return True


def release_free_memory() -> bool:
    """Give the pages of freed heap memory back to the operating system (``malloc_trim(0)``).
    Returns whether it could (False: not glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
