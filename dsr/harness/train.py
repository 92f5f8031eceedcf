"""The shared harness: one run = data, method, optimiser, schedule, epochs, metrics.json.

Reads top to bottom: set-up -> checks before the first step (dsr.harness.preflight) -> resume ->
epochs (train, evaluate, checkpoint) -> final metrics (measured, then recorded). Deterministic on
CPU given the seed: batches depend on (seed, epoch) only and the RNG state is checkpointed, so a run
killed at any point and rerun with the same arguments resumes and ends with the same metrics; a
SIGTERM or SIGUSR1 (a scheduler's warning) checkpoints the current step and exits, and a run
whose loss or weights become non-finite is recorded as diverged (dsr.harness.checkpoint,
dsr.harness.record). Runs under torchrun with DistributedDataParallel (gloo on CPU, nccl on GPU);
DDP averages gradients, so dL/dv_th is never multiplied by the number of processes. The other entry
point, ANN-to-SNN conversion without training, is `dsr.harness.convert`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from dsr import data as dsr_data
from dsr.config import RunConfig
from dsr.harness import checkpoint, preflight
from dsr.harness.checkpoint import Preempted, Progress, StopFlag
from dsr.harness.cost import TrainingMemory, sync
from dsr.harness.evaluate import Evaluation, accuracy, evaluate, evaluated, latency
from dsr.harness.optim import make_optimizer, make_schedule, steps_per_epoch
from dsr.harness.provenance import Start, run_provenance, started
from dsr.harness.record import RunRecord, diverged_record, trained_record
from dsr.harness.results import remove_stale_temps, run_lock
from dsr.method import Method
from dsr.stages import CALIBRATE, PRETRAIN_ANN, Stage, training_stages


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. an incompatible model file); the message says why."""


class Diverged(RuntimeError):  # noqa: N818 (a result, recorded as such: not an error)
    """The loss or the weights became non-finite in epoch `epoch` (1-based)."""

    def __init__(self, epoch: int, reason: str):
        super().__init__(f"diverged in epoch {epoch}: {reason}")
        self.epoch, self.reason = epoch, reason


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def drop_last(self) -> bool:
        """Under DDP the ragged last training batch is dropped so no rank gets an empty share."""
        return self.world_size > 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available; use --device cpu or auto")
    return device


def init_distributed(device: torch.device) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend)
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size())


def set_seed(cfg: RunConfig, device: torch.device) -> None:
    """The run's seed; on CPU, deterministic algorithms as well (same seed, same metrics)."""
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        deterministic_algorithms()


def deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True) without its import of
    torch._inductor (about 1.4 s of a digits job, bench/startup.py), only to set the compiler's
    flag; nothing here compiles, and if the compiler is already loaded its flag is set too."""
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = True


def load_data(cfg: RunConfig) -> dsr_data.Dataset:
    """The run's data (its dataset's class: cfg.plugins names an out-of-tree one; with
    val_fraction, a validation split held out of the training set), refused before the first
    step if a split is empty or a label is out of range (dsr.data.check_splits)."""
    t = cfg.train
    plugin = {cfg.dataset: cfg.plugins["dataset"]} if "dataset" in cfg.plugins else None
    data = dsr_data.load(cfg.dataset, t.data_root, download=t.download,
                         train_subset=t.train_subset, test_subset=t.test_subset,
                         params=cfg.data_params, plugins=plugin)
    if t.val_fraction:
        data = data.with_validation(t.val_fraction)
    dsr_data.check_splits(data, cfg.dataset)
    return data


@dataclass
class Run:
    """What a run's stages share (never its method, which each function is given):
    configuration, data, device, processes, log and the training memory (its baseline: the
    data loaded, nothing built)."""

    cfg: RunConfig
    data: dsr_data.Dataset
    device: torch.device
    dist: Dist
    log: Callable[[str], None] = print
    memory: TrainingMemory = field(init=False)

    def __post_init__(self) -> None:
        self.memory = TrainingMemory(self.device)


def training_module(model: nn.Module, method: Method, device: torch.device,
                    dist: Dist) -> nn.Module:
    """The method's training module, inside DDP when the run has several processes (DDP
    averages gradients, so dL/dv_th is not multiplied by the number of processes)."""
    module = method.training_module(model)
    if dist.world_size == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def train_one_epoch(model: nn.Module, method: Method, data: dsr_data.Dataset,
                    optimizer: torch.optim.Optimizer, schedule: LRScheduler,
                    cfg: RunConfig, epoch: int, device: torch.device, dist: Dist | None = None,
                    progress: Progress | None = None, stop: StopFlag | None = None) -> float:
    """One epoch over the training set (the mean loss); `model` is `training_module`'s output.
    With `progress`, the epoch starts after its `step` steps (a resumed run) and its counters
    are kept there; with `stop`, a set flag ends the epoch after the current step with
    Preempted."""
    t, dist = cfg.train, dist or Dist()
    progress = progress or Progress(epoch)
    model.train()
    # batch_size is the global batch; each rank takes its share (the data layer's contract)
    batches = data.batches("train", t.batch_size, epoch=epoch, seed=cfg.seed, device=device,
                           rank=dist.rank, world_size=dist.world_size, drop_last=dist.drop_last,
                           start=progress.step)
    bar = tqdm(batches, total=steps_per_epoch(data, t, dist) - progress.step,
               desc=f"epoch {epoch + 1}", leave=False, disable=None, file=sys.stderr)
    for x, y in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = method.train_step(model, x, y)
        if not torch.isfinite(loss):
            raise Diverged(epoch + 1, f"non-finite loss ({loss.item()}) at step "
                           f"{progress.step + 1}")
        optimizer.step()
        schedule.step()
        progress.step += 1
        progress.loss_sum += loss.item() * len(y)
        progress.samples += len(y)
        if stop is not None and stopping(stop, device, dist):
            raise Preempted(f"stopped by signal {stop.signal} in epoch {epoch + 1} after "
                            f"step {progress.step}")
    return progress.loss_sum / max(1, progress.samples)


def stopping(stop: StopFlag, device: torch.device, dist: Dist) -> bool:
    """Whether to stop now; every process of a DDP run agrees (one may miss the signal)."""
    if dist.world_size == 1:
        return bool(stop)
    flag = torch.tensor(float(bool(stop)), device=device)
    torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
    return bool(flag.item())


def fit(model: nn.Module, method: Method, run: Run, epochs: int) -> None:
    """Plain training for `epochs` (no checkpoints, no evaluation): a pre-training stage."""
    cfg, data, device, dist = run.cfg, run.data, run.device, run.dist
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg.train, data, dist, epochs)
    module = training_module(model, method, device, dist)
    for epoch in range(epochs):
        loss = train_one_epoch(module, method, data, opt, sched, cfg, epoch, device, dist)
        run.log(f"[pre-train {method.key or type(method).__name__}] epoch {epoch + 1}/{epochs} "
                f"loss {loss:.4f}")


def run_epoch(run: Run, model: nn.Module, train_model: nn.Module, method: Method, stage: Stage,
              opt, sched, progress: Progress, stop: StopFlag | None = None) -> Evaluation:
    """Train epoch `progress.epoch` of the run (from its `step`), evaluate what `stage`
    evaluates, append both to the history, log them and move `progress` to the next epoch's
    start."""
    cfg, data, device, epoch = run.cfg, run.data, run.device, progress.epoch
    run.memory.start_epoch()
    t0 = time.perf_counter() - progress.seconds
    try:
        loss = train_one_epoch(train_model, method, data, opt, sched, cfg, epoch, device,
                               run.dist, progress, stop)
    finally:  # a stopped epoch keeps its time so far in the checkpoint
        progress.seconds = time.perf_counter() - t0
    sync(device)
    seconds = time.perf_counter() - t0
    peak, reserved = run.memory.end_epoch()
    steps = progress.step
    if not finite_state(model):  # a finite loss with non-finite gradients
        raise Diverged(epoch + 1, "non-finite weights after the epoch")
    # the last epoch's pass also counts SynOps (one pass over the test set, not two)
    net, layers = evaluated(model, method, stage, data)
    last = evaluate(net, layers, method, data, cfg, device, synops=epoch + 1 == cfg.train.epochs)
    acc, total = last.accuracy, last.counter.total()
    values = [("accuracy", acc), ("loss", loss), ("seconds", seconds), ("rate", total),
              ("steps", steps), ("memory", peak), ("reserved", reserved)]
    if data.has_split("val"):
        values.append(("val_accuracy", accuracy(net, method, data, "val",
                                                cfg.train.eval_batch_size, device)))
    for key, value in values:
        progress.history.setdefault(key, []).append(value)  # older checkpoints lack some
    progress.epoch, progress.step, progress.loss_sum = epoch + 1, 0, 0.0
    progress.samples, progress.seconds = 0, 0.0
    rate = "-" if total is None else f"{100 * total:.2f}%"
    run.log(f"[{cfg.method} {cfg.dataset} T={cfg.time_steps} seed={cfg.seed}] epoch "
            f"{epoch + 1}/{cfg.train.epochs} loss {loss:.4f} acc {100 * acc:.2f}% rate "
            f"{rate} {seconds:.1f}s")
    return last


def prepare(run: Run, model: nn.Module, method: Method, before: tuple[Stage, ...]) -> None:
    """Run the stages before the checkpointed one (a fresh run only), in order: `pretrain-ann`
    trains the method's ANN twin, `calibrate` sets `model` up from it."""
    ann: nn.Module | None = None
    for stage in before:
        if stage.name == PRETRAIN_ANN:
            twin = method.ann_twin()
            ann = twin.build(run.cfg.arch, run.data.info).to(run.device)
            fit(ann, twin, run, stage.epochs or run.cfg.train.epochs)
        elif stage.name == CALIBRATE.name and ann is not None:
            method.calibrate(model, ann, run.data)
        else:
            raise TrainingError(f"{run.cfg.method}: stage {stage.name!r} cannot run here (known "
                                f"before training: {PRETRAIN_ANN}, then {CALIBRATE.name})")


def finite_state(model: nn.Module) -> bool:
    return all(v.isfinite().all() for v in model.state_dict().values() if v.is_floating_point())


# ---- one run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What training produced: the model, its last evaluation (None if it diverged), the
    per-epoch history and, if it diverged, where and why."""

    model: nn.Module
    last: Evaluation | None
    history: dict[str, list]
    diverged: Diverged | None = None


def run(cfg: RunConfig, method_cls: type[Method], out: Path, log=print,
        save_model: Path | None = None) -> RunRecord:
    """Train and evaluate one configuration with `method_cls` (as `dsr.harness.resolve.resolve`
    returns them): its stages before `convert` (dsr.stages); write `out` (metrics.json) atomically
    at the end, and with `save_model` the trained weights (a model.pt that `dsr.harness.convert`
    loads) before it."""
    start = started()
    device = pick_device(cfg.train.device)
    dist = init_distributed(device)
    set_seed(cfg, device)
    data = load_data(cfg)
    method: Method = method_cls(cfg)
    stages = training_stages(method.stages())
    if not stages:
        raise TrainingError(f"{cfg.method} never trains: it converts a trained ANN "
                            "(--from-checkpoint)")
    preflight.check_run(cfg, method.model_options(data.info), data.info, device, dist.world_size)
    ctx = Run(cfg, data, device, dist, log)
    state = restore(ctx, method, out)  # a checkpoint that does not fit is refused, nothing written
    # one process per run folder (DDP's other ranks write nothing)
    with run_lock(out) if dist.main else contextlib.nullcontext():
        outcome = train(ctx, method, stages, out, state)
        rec = outcome_record(ctx, method, outcome, start)
        if outcome.diverged is not None:
            log(f"{outcome.diverged}; recorded as diverged in {out}")
        if dist.main:
            if save_model is not None:
                checkpoint.write_model(save_model, outcome.model, cfg, rec)
            rec.write(out)
    return rec


def outcome_record(run: Run, method: Method, outcome: Outcome, start: Start) -> RunRecord:
    """The run's record: latency timed now (batch 1 and eval_batch_size) and the process's
    peak memory, with the last evaluation, the history and the training memory; a diverged
    run's evaluates nothing."""
    cfg, device, world = run.cfg, run.device, run.dist.world_size
    kind, info = run.memory.kind, run.data.info
    if outcome.diverged is not None:
        div = outcome.diverged
        return diverged_record(cfg, method, info, outcome.history, div.epoch, div.reason,
                               run.memory.process_peak(), str(device),
                               run_provenance(cfg, device, start, world), kind)
    ms = latency(outcome.last.net, method, run.data, cfg, device)
    return trained_record(cfg, method, info, outcome.last, outcome.history, ms,
                          run.memory.process_peak(), str(device),
                          run_provenance(cfg, device, start, world), kind)


@dataclass
class State:
    """A run's model, optimiser, schedule and progress before its next step, and the checkpoint
    file they were read from (its size and mtime; None if there was none)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    progress: Progress
    stamp: tuple[int, int] | None


def restore(run: Run, method: Method, out: Path) -> State:
    """Build the model, optimiser and schedule and load the checkpoint beside `out` into them,
    if there is one; reads only, so a checkpoint of another run or one that does not fit is
    refused before anything is written."""
    cfg, data, t = run.cfg, run.data, run.cfg.train
    model = method.build(cfg.arch, data.info).to(run.device)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, t, data, run.dist, t.epochs)
    path = checkpoint.checkpoint_path(out)
    stamp = checkpoint.stamp(path)
    ckpt = checkpoint.load(path, cfg)
    progress = Progress() if ckpt is None else checkpoint.resume(ckpt, path, model, opt, sched)
    return State(model, opt, sched, progress, stamp)


def train(run: Run, method: Method, stages: tuple[Stage, ...], out: Path, state: State
          ) -> Outcome:
    """Run `stages` on the restored `state`: on a fresh run the ones before the last (e.g. ANN
    pre-training), then a fresh optimiser; then the last for the run's remaining epochs, a
    checkpoint after each epoch and at a stop signal (then Preempted is raised). The caller
    holds the run's lock; a checkpoint another process wrote since `restore` read it is read
    again."""
    cfg, dist, t = run.cfg, run.dist, run.cfg.train
    *before, stage = stages
    ckpt_path = checkpoint.checkpoint_path(out)
    if checkpoint.stamp(ckpt_path) != state.stamp:
        state = restore(run, method, out)
    model, opt, sched, progress = state.model, state.opt, state.sched, state.progress
    try:
        if state.stamp is None and before:  # a fresh run: pre-training, then a fresh optimiser
            prepare(run, model, method, tuple(before))
            opt = make_optimizer(model, cfg)
            sched = make_schedule(opt, t, run.data, dist, t.epochs)
        elif state.stamp is not None:
            run.log(f"resuming {out} at epoch {progress.epoch + 1}, step {progress.step} "
                    f"({ckpt_path})")
        train_model = training_module(model, method, run.device, dist)
        if dist.main:
            remove_stale_temps(ckpt_path)
            remove_stale_temps(out)
        last: Evaluation | None = None
        with checkpoint.stop_on_signals() as stop:
            while progress.epoch < t.epochs:
                try:
                    last = run_epoch(run, model, train_model, method, stage, opt, sched, progress,
                                     stop)
                except Preempted:
                    if dist.main:
                        checkpoint.save(ckpt_path, cfg, progress, model, opt, sched)
                    raise
                if dist.main:
                    checkpoint.save(ckpt_path, cfg, progress, model, opt, sched)
    except Diverged as e:
        return Outcome(model, None, progress.history, e)
    if last is None:  # resumed after the last epoch's checkpoint
        net, layers = evaluated(model, method, stage, run.data)
        last = evaluate(net, layers, method, run.data, cfg, run.device, synops=True)
    return Outcome(model, last, progress.history)
