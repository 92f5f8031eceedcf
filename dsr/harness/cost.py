"""What a run costs: inference latency per sample, the process's peak memory, and the peak
memory of training itself, epoch by epoch (`TrainingMemory`)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory so far: CUDA max allocated on GPU, peak RSS of this process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return int(rss) * (1 if sys.platform == "darwin" else 1024), "cpu_peak_rss"


def _status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class TrainingMemory:
    """Peak memory of each training epoch (its steps, not its evaluation).

    CUDA: the allocator's max allocated and max reserved bytes (absolute, as SLTT's efficiency
    table reports `torch.cuda.max_memory_reserved`), its peak reset at each epoch's start. CPU:
    the growth of the resident set over its level when the run's training started (model,
    optimiser state, activations, temporaries), Linux's high-water mark VmHWM reset at each
    epoch's start (/proc/self/clear_refs); where it cannot be reset, the growth is over the
    whole process so far and `kind` says it is an upper bound. `process_peak` keeps the process
    peak that the resets would otherwise hide."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self.baseline = 0 if self.cuda else (_status_bytes("VmRSS") or 0)
        self.floor = 0
        self.kind = "cuda_max_allocated" if self.cuda else "cpu_rss_growth"

    def start_epoch(self) -> None:
        self.floor = max(self.floor, peak_memory(self.device)[0])
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            self.kind = "cpu_rss_growth_upper_bound"

    def end_epoch(self) -> tuple[int | None, int | None]:
        """(peak bytes, CUDA peak reserved bytes or None) of the epoch since start_epoch."""
        if self.cuda:
            return (int(torch.cuda.max_memory_allocated(self.device)),
                    int(torch.cuda.max_memory_reserved(self.device)))
        hwm = _status_bytes("VmHWM")
        return (None if hwm is None else max(0, hwm - self.baseline)), None

    def process_peak(self) -> tuple[int, str]:
        """peak_memory, including the peaks before each reset."""
        value, kind = peak_memory(self.device)
        return max(value, self.floor), kind


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency_ms(fn: Callable[[Tensor], Tensor], x: Tensor, repeats: int) -> float:
    """Median milliseconds per sample of `fn(x)` over `repeats` timed calls after one warm-up."""
    batch = x.shape[-4] if x.dim() >= 4 else x.shape[0]
    fn(x)
    sync(x.device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn(x)
        sync(x.device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2] / batch


def measure_latency(fn: Callable[[Tensor], Tensor], x: Tensor, repeats: int) -> dict[str, float]:
    """Milliseconds per sample at batch 1 and at the batch of `x` ([B, ...] or [T, B, ...]):
    {"batch_1": .., "batch_B": ..} (metrics.json "latency.ms_per_sample")."""
    one = x[..., :1, :, :, :] if x.dim() == 5 else x[:1]
    return {"batch_1": latency_ms(fn, one, repeats),
            f"batch_{x.shape[-4]}": latency_ms(fn, x, repeats)}
