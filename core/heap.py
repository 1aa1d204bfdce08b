"""The process's allocator setting for big arrays (every entry point sets it: the CLI, hence the server).

glibc raises its mmap threshold adaptively, up to 32 MiB, after large blocks are freed; from then on
feature arrays and bands of a big photo's prediction come from the heap, whose freed holes are rarely
returned to the OS. Measured: the server's RSS grew by gigabytes over a 1,000-image session (bench part
`memory`); `predict` on a 12,000 x 9,000 photo peaked 1.1 GiB higher (bench part `resolution`).
"""

from __future__ import annotations

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)


def limit_heap_fragmentation() -> None:
    """Serve blocks above 128 KiB from mmap'd memory, returned to the OS when freed."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to tune
        pass
