"""Spiking statistics of evaluation: firing rates (Fig. S1), SynOps/energy, latency, memory.

Firing rate = spikes per neuron per time step over the whole test set. A spike is a non-zero
output element at one step, whatever its amplitude (v_th for DSR-IF, v_th/dt for DSR-LIF, a scale
for conversion), since every neuron here emits at most one spike per step.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn


class SpikeCounter:
    """Forward hooks on spiking layers that count spikes and neuron-steps."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers
        self.spikes = [0] * len(layers)
        self.slots = [0] * len(layers)

    @contextlib.contextmanager
    def attach(self) -> Iterator[SpikeCounter]:
        handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, i: int) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            self.spikes[i] += int(torch.count_nonzero(output))
            self.slots[i] += output.numel()

        return hook

    def per_layer(self) -> list[float]:
        return [s / n if n else 0.0 for s, n in zip(self.spikes, self.slots, strict=True)]

    def total(self) -> float | None:
        slots = sum(self.slots)
        return sum(self.spikes) / slots if slots else None


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory so far: CUDA max allocated on GPU, peak RSS of this process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_peak_rss"


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


def synops(net: nn.Module, method, data, device: torch.device, cfg) -> dict:
    """Placeholder until the SynOps counter lands: the slots exist, the values are null."""
    return {"per_layer": [], "total_ac": None, "total_mac": None, "energy_pj": None,
            "pj_per_ac": 0.9, "pj_per_mac": 4.6}
