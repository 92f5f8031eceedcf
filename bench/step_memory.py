"""Memory meters of the training-step benchmark (`bench.train_step`): peak RSS growth on the CPU
(glibc told to mmap big blocks so RSS follows live data) or CUDA max allocated, and the bytes
autograd keeps for backward (`SavedBytes`)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import weakref
from collections.abc import Callable, Iterator

MMAP_EXACT = 128 * 1024  # every block >= 128 KiB gets its own mapping, unmapped on free
MMAP_DEFAULT_MAX = 32 * 2**20  # where glibc's dynamic threshold settles on 64-bit


def mallopt_mmap_threshold(nbytes: int) -> None:
    try:  # glibc: M_MMAP_THRESHOLD = -3; freed heap pages handed back first
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        libc.mallopt(-3, nbytes)
    except (OSError, AttributeError):
        pass


def mallopt_heap_reuse() -> None:
    try:  # M_MMAP_MAX = -4 (0: never mmap), M_TRIM_THRESHOLD = -1 (never give pages back)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)
        libc.mallopt(-1, 2**31 - 1)
    except (OSError, AttributeError):
        pass


def rss_peak_reset() -> bool:
    try:  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


class SavedBytes:
    """saved_tensors_hooks that add up the unique storages autograd still keeps when backward
    starts (`snapshot`): what a graph frees during the forward, as the fast mode's record pass
    does with each BN's coupling graph, is not kept for backward and not counted."""

    def __init__(self, model):
        self.skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.refs: list[tuple[int, int, weakref.ref]] = []
        self.total = 0

    def pack(self, t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.skip:
            self.refs.append((storage.data_ptr(), storage.nbytes(), weakref.ref(t)))
        return t

    @staticmethod
    def unpack(t):
        return t

    def snapshot(self) -> None:
        """Add up what is kept now; the largest such total is `total` (online methods call
        backward once per time step, each on its own graph)."""
        gc.collect()
        kept = sum(dict((ptr, n) for ptr, n, ref in self.refs if ref() is not None).values())
        self.total = max(self.total, kept)


@contextlib.contextmanager
def snapshot_at_backward(saved: SavedBytes) -> Iterator[None]:
    """Inside, every `Tensor.backward` first takes `saved.snapshot()`."""
    import torch

    backward = torch.Tensor.backward

    def snapshotting(self, *args, **kwargs):
        saved.snapshot()
        return backward(self, *args, **kwargs)

    torch.Tensor.backward = snapshotting
    try:
        yield
    finally:
        torch.Tensor.backward = backward



def peak_meter(device_name: str) -> Callable[[], int]:
    """Starts measuring now; the function returned gives the growth of the peak since, in bytes:
    CUDA max allocated, or CPU peak RSS with big blocks mmap'd so that RSS follows live data."""
    import torch

    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        return lambda: torch.cuda.max_memory_allocated(device) - base
    mallopt_mmap_threshold(MMAP_EXACT)
    if rss_peak_reset():
        base = rss_kb("VmRSS") * 1024
        return lambda: rss_kb("VmHWM") * 1024 - base
    # no /proc: the lifetime peak bounds it from above
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base

