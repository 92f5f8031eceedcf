"""Wall-clock cost of evaluation: inference latency per sample and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory so far: CUDA max allocated on GPU, peak RSS of this process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return int(rss) * (1 if sys.platform == "darwin" else 1024), "cpu_peak_rss"


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
