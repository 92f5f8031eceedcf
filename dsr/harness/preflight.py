"""Checks before the first step: the input fits the architecture, and T x batch activations fit
in memory. Each failure is one line that names the problem, the estimate and the fix; nothing is
trained or written.

The probe is the run's architecture with ReLU in place of every neuron (the ANN twin: same
layers, same shapes at each time step) on one sample and one step, so it costs one small forward
whatever T is. Memory is estimated in float32 from its per-sample, per-step output sizes:
- at least: the largest layer's output at [T, B, ...], which any T-step forward holds at once;
- if kept: every layer's output at [T, B, ...], what backpropagation through all T steps keeps.
A run is refused when even the first exceeds the memory available (the second is in the
message as the scale to expect); nothing in between is guessed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dsr.config import ConfigError, RunConfig
from dsr.data import DataInfo
from dsr.snn import models

GB = 1e9
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Footprint:
    """Values per sample and per time step of the network's layer outputs."""

    largest: int
    largest_name: str
    total: int

    def text(self, T: int, batch: int, available: int) -> str:
        low, kept = (T * batch * n * FLOAT_BYTES / GB for n in (self.largest, self.total))
        return (f"T={T} x batch {batch} needs at least {low:.1f} GB for one layer's activations "
                f"({self.largest_name}: {self.largest:,} values per sample and step; about "
                f"{kept:.1f} GB if every step is kept for backward), {available / GB:.1f} GB is "
                "available")

    def refuse_above(self, available: int | None, T: int, batch: int, what: str) -> None:
        if available is not None and T * batch * self.largest * FLOAT_BYTES > available:
            raise ConfigError(f"{what}: {self.text(T, batch, available)}; lower T or the batch "
                              "size")


def footprint(cfg: RunConfig, options: dict, info: DataInfo) -> Footprint:
    """Probe the architecture (see the module docstring); a shape the architecture cannot take
    is a one-line ConfigError."""
    # the probe's initialisation draws from a forked RNG: the run's own model is initialised
    # exactly as without the probe; a too-small input builds zero-size layers, refused below
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = models.create(cfg.arch, models.ReLU, **options).eval()
    sizes: dict[str, int] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: sizes.__setitem__(name, out[0].numel()))
        for name, m in net.named_modules() if not list(m.children())]
    shape = (1, 1) if info.sequence else (1,)  # [T=1, B=1, ...] for event frames
    x = torch.zeros(*shape, info.in_channels, info.image_size, info.image_size)
    try:
        with torch.no_grad():
            net(x)
    except (RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"architecture {cfg.arch} does not take the {info.image_size}x"
                          f"{info.image_size} input of {cfg.dataset} ({first}); choose an "
                          "architecture for inputs of that size (e.g. preact_resnet8 for 8x8)"
                          ) from None
    finally:
        for h in hooks:
            h.remove()
    name = max(sizes, key=sizes.get)
    return Footprint(sizes[name], name, sum(sizes.values()))


def available_memory(device: torch.device) -> int | None:
    """Bytes free for this process: CUDA's free memory, else the lesser of the machine's
    MemAvailable and the cgroup's limit minus its use (a Slurm job's memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            free.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return min(free) if free else None


def check_run(cfg: RunConfig, options: dict, info: DataInfo, device: torch.device,
              world_size: int) -> Footprint:
    """A training run: the architecture takes the input, and one layer's activations at
    [T, B, ...] fit, for the training batch (per process) and the evaluation batch."""
    fp = footprint(cfg, options, info)
    free = available_memory(device)
    t = cfg.train
    fp.refuse_above(free, cfg.time_steps, max(1, t.batch_size // world_size), "training")
    fp.refuse_above(free, cfg.time_steps, t.eval_batch_size, "evaluation")
    return fp

