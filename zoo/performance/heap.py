"""glibc's ``malloc`` kept from handing the memory of a step's freed tensors back to the
operating system while the torch window trains or ``zoo.predict`` runs (``held``).

Why: torch's CPU tensors come from ``malloc``, and glibc gives the top of its heap back
whenever more than its trim threshold is free there (twice the largest block it has
freed, at most 64 MiB). A convolutional step frees its activations at its end, the
heap's top is given back, and the next step touches every page of it again: on this
2-core CPU, in a fresh process, conv_autoencoder's replayed step (batch 64) took about
6,000 minor page faults and 26 ms, 18.5 ms with the heap held (0 faults); toy_resnet's
7,700 faults and 60 ms, 50 ms (``docs/benchmarks.md``). The same holds for plain torch
code, whose documentation suggests jemalloc or tcmalloc (``LD_PRELOAD``) for it; glibc's
own ``mallopt`` needs no library. Only the torch paths use it: TensorFlow's steps fault
little (57 a step for conv_autoencoder), and JAX's as often with it as without (XLA's
buffers do not come from this heap).

Written here because neither torch nor Keras has a switch for it (torch's caching CPU
allocator is mobile-only); only ``ctypes`` and glibc's documented ``mallopt``. Elsewhere
(macOS, Windows, musl) nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap (glibc's largest dynamic threshold on a
#: 64-bit system: 4 MiB x sizeof(long)); larger ones stay ``mmap``ed, as glibc does
MMAP_THRESHOLD = 32 * 1024 * 1024
#: while held: free memory at the heap's top is kept up to this (mallopt takes an int)
HELD_TRIM_THRESHOLD = 2**31 - 1
#: after: glibc's own dynamic rule at ``MMAP_THRESHOLD`` (twice it)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | bool | None = False  # False: not looked up yet


def glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (it has ``mallopt`` and
    ``gnu_get_libc_version``), else None."""
    global _libc
    if _libc is False:
        _libc = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt"):
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _libc = libc
        except OSError:  # no C library by that name: not glibc
            pass
    return _libc or None


@contextlib.contextmanager
def held() -> Iterator[bool]:
    """Within the block, the heap's freed memory is kept for the next allocation (no
    page faults for a step's tensors); after the outermost block, glibc's thresholds at
    its dynamic rule's largest values, so that a ``free`` gives the heap's free top back
    once it is over 64 MiB (not ``malloc_trim`` here: a loop of ``predict`` calls would
    touch its pages again at every call). Yields whether the heap is held (False off
    glibc). Nested and concurrent blocks hold it until the last ends."""
    global _depth
    libc = glibc()
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, HELD_TRIM_THRESHOLD)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
