"""Checkpoints of a training run: written atomically after every epoch and, when the scheduler
asks the job to stop (SIGTERM or SIGUSR1: Slurm's warning before a time limit or a preemption),
after the current step, so a requeued job resumes mid-epoch instead of losing the epoch.

A checkpoint holds the run's config hash (a checkpoint of another run is never resumed), the
model, optimiser and scheduler state, the RNG states, the per-epoch history and, mid-epoch, the
steps done and the partial loss and time of the epoch. Also the model.pt of a finished run
(`write_model`), which `dsr.harness.convert` converts.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsr.config import RunConfig
from dsr.harness.record import RunRecord
from dsr.harness.results import atomic_write

CHECKPOINT_KEYS = ("config_hash", "epoch", "model", "optimizer", "scheduler", "rng", "history")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed; the message says why and what to do."""


class Preempted(RuntimeError):  # noqa: N818 (not an error: the job was asked to stop)
    """The job was asked to stop; a checkpoint of the current step was written."""


@dataclass
class Progress:
    """Where a run stands: epochs done, steps done in the next epoch and that epoch's partial
    loss sum, sample count and seconds (all zero at an epoch boundary)."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    samples: int = 0
    seconds: float = 0.0
    history: dict[str, list] = field(default_factory=lambda: {
        "accuracy": [], "loss": [], "seconds": [], "rate": [], "steps": [], "memory": [],
        "reserved": []})


def checkpoint_path(out: Path) -> Path:
    """checkpoint.pt beside a run's metrics.json; <name>.checkpoint.pt beside any other --out,
    so two hand-chosen outputs in one folder never share a checkpoint."""
    return out.parent / ("checkpoint.pt" if out.name == "metrics.json"
                         else f"{out.stem}.checkpoint.pt")


def stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a checkpoint file, None if there is none: whether it changed."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def rng_state() -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Any) -> None:
    if isinstance(state, torch.Tensor):  # written before CUDA states were kept
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load(path: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """The checkpoint at `path` (None if there is none), checked to belong to the run `cfg`."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a checkpoint: never a bare traceback
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to "
                              "restart this run from scratch") from None
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in CHECKPOINT_KEYS):
        raise CheckpointError(f"{path}: not a checkpoint of this trainer; delete it to restart "
                              "this run from scratch")
    if ckpt["config_hash"] != cfg.hash:
        raise CheckpointError(f"{path}: checkpoint of another run (config_hash "
                              f"{ckpt['config_hash']}, this run is {cfg.hash}); give this run "
                              "its own folder (--out), or rerun with the arguments that wrote it")
    return ckpt


def resume(ckpt: dict[str, Any], path: Path, model: nn.Module, opt, sched) -> Progress:
    """Load the state of `ckpt` (read from `path`) into model, optimiser and scheduler."""
    try:  # same config hash, but e.g. written by another version of the code
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: does not fit this model ({str(e).splitlines()[0]}); "
                              "delete it to restart this run from scratch") from None
    partial = ckpt.get("partial") or {}
    return Progress(ckpt["epoch"], partial.get("step", 0), partial.get("loss_sum", 0.0),
                    partial.get("samples", 0), partial.get("seconds", 0.0), ckpt["history"])


def save(path: Path, cfg: RunConfig, progress: Progress, model: nn.Module, opt, sched) -> None:
    """The state at `progress`, written atomically: a kill mid-write keeps the last one."""
    state = {"config_hash": cfg.hash, "epoch": progress.epoch, "model": model.state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(),
             "history": progress.history}
    if progress.step:
        state["partial"] = {"step": progress.step, "loss_sum": progress.loss_sum,
                            "samples": progress.samples, "seconds": progress.seconds}
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")


class StopFlag:
    """Set by SIGTERM / SIGUSR1; the training loop checks it after every step."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def set(self, signum: int, frame: Any = None) -> None:
        self.signal = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """A StopFlag set by SIGTERM or SIGUSR1 while the block runs (handlers restored after)."""
    flag = StopFlag()
    try:
        previous = {s: signal.signal(s, flag.set) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals cannot be caught here
        yield flag
        return
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def write_model(path: Path, model: nn.Module, cfg: RunConfig, rec: RunRecord) -> None:
    """The trained weights with what produced them (the last epoch's: what conversion uses);
    a diverged run's model says so, and conversion records it as diverged without using it."""
    state = {"method": cfg.method, "dataset": cfg.dataset, "arch": cfg.arch, "seed": cfg.seed,
             "config": cfg.to_dict(), "config_hash": cfg.hash,
             "accuracy": rec.accuracy.final,
             "diverged": None if rec.diverged is None else rec.diverged.to_json(),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")
