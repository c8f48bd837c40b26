"""glibc heap settings for long loops over large, equally or differently sized arrays (no-ops elsewhere).

- ``tame_heap``: a fixed mmap threshold, so large tensors of differently sized clouds are mmapped and
  returned on free (resident memory stays flat; Concerto);
- ``pad_heap``: the heap grows and shrinks in large steps, so the same-sized buffers of one image after
  another reuse pages already mapped instead of faulting fresh ones in (point clouds, drives);
- ``release_heap``: return freed heap pages to the OS.

Torch-free, so the image stages can use it without importing torch.
"""

from __future__ import annotations

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters (glibc malloc.h)


def _libc():
    """glibc via ctypes, or None (other C libraries / platforms: the heap helpers are no-ops)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tame_heap() -> None:
    """Fix glibc's mmap threshold at 1 MiB so large tensors are mmapped and returned on free.

    Measured on 8192-point Concerto frames (tiny preset): by default resident memory grows ~4 MB per frame
    (fragmentation from each cloud's differently sized tensors, not a leak), ~1 GB over 240 frames; with
    the fixed threshold ~1.3 MB per frame, and the per-frame time drops (~0.3 -> ~0.2 s). The rest is
    given back with periodic ``release_heap`` calls.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def pad_heap(pad_mb: int = 64) -> None:
    """Grow glibc's heap and keep its free top in steps of ``pad_mb`` MiB (``M_TOP_PAD``).

    A frame of the point-cloud stage allocates and frees the same few 0.5-2 MB buffers (decoded PNGs, and
    numpy's 1.9 MB index array inside ``Generator.choice``). By default glibc gives the freed top of the heap
    back, and the next frame page-faults the same amount in again. Measured on 640 x 380 frames, one process:
    ``choice`` 2.1-2.3 -> 0.5-0.6 ms per frame. Resident memory stays at most ``pad_mb`` above the default.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_TOP_PAD, pad_mb << 20)


def release_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``; no-op elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
