"""The shared harness: one run = data, method, optimiser, schedule, epochs, metrics.json.

Reads top to bottom: set-up -> resume -> epochs (train, evaluate, checkpoint) -> final metrics
(measured, then recorded). Deterministic on CPU given the seed: batches depend on (seed, epoch)
only and the RNG state is checkpointed, so a run killed at any point and rerun with the same
arguments resumes and ends with the same metrics. Runs under torchrun with
DistributedDataParallel (gloo on CPU, nccl on GPU); DDP averages gradients, so dL/dv_th is never
multiplied by the number of processes. The other entry point, ANN-to-SNN conversion without
training, is `dsr.convert`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm import tqdm

from dsr import data as dsr_data
from dsr import metrics as M
from dsr.config import RunConfig, TrainConfig
from dsr.cost import measure_latency, peak_memory, sync
from dsr.method import Method
from dsr.provenance import Start, provenance, started
from dsr.results import SCHEMA_VERSION, atomic_write, remove_stale_temps, write_metrics

CHECKPOINT_KEYS = ("config_hash", "epoch", "model", "optimizer", "scheduler", "rng", "history")


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, incompatible checkpoint); message says why."""


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
        torch.use_deterministic_algorithms(True, warn_only=True)


def load_data(cfg: RunConfig, plugins: dict[str, str] | None) -> dsr_data.Dataset:
    t = cfg.train
    return dsr_data.load(cfg.dataset, t.data_root, download=t.download,
                         train_subset=t.train_subset, test_subset=t.test_subset,
                         dvs_split=t.dvs_split, dvs_reader=t.dvs_reader, frames=t.frames,
                         plugins=plugins)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up over `warmup` iterations, then cosine annealing to 0 at `total`."""

    def f(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        progress = (it - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    # weight decay on every parameter, v_th included, as the official code does
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum,
                               weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def steps_per_epoch(data: dsr_data.Dataset, t: TrainConfig, dist: Dist) -> int:
    return data.num_batches("train", t.batch_size, world_size=dist.world_size,
                            drop_last=dist.drop_last)


def make_schedule(opt: torch.optim.Optimizer, t: TrainConfig, data: dsr_data.Dataset, dist: Dist,
                  epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr schedule of `epochs` epochs, stepped once per training batch."""
    total = epochs * steps_per_epoch(data, t, dist)
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t.warmup_iters, total))


@dataclass
class Evaluation:
    accuracy: float
    net: nn.Module  # the evaluated network (method.inference_model)
    counter: M.SpikeCounter
    synops: dict[str, Any] | None


class Trainer:
    """Trains `method` on `data` for the run `cfg`; `fit` is reusable for ANN pre-training."""

    def __init__(self, cfg: RunConfig, method: Method, data: dsr_data.Dataset,
                 device: torch.device, dist: Dist, log=print):
        self.cfg, self.method, self.data, self.device, self.dist = cfg, method, data, device, dist
        self.log = log

    def training_module(self, model: nn.Module, method: Method) -> nn.Module:
        """The method's training module, inside DDP when the run has several processes (DDP
        averages gradients, so dL/dv_th is not multiplied by the number of processes)."""
        module = method.training_module(model)
        if self.dist.world_size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def train_epoch(self, model: nn.Module, method: Method, opt, sched, epoch: int) -> float:
        """One epoch over the training set; `model` is the output of `training_module`."""
        t, dist = self.cfg.train, self.dist
        model.train()
        # batch_size is the global batch; each rank takes its share (the data layer's contract)
        batches = self.data.batches("train", t.batch_size, epoch=epoch, seed=self.cfg.seed,
                                    device=self.device, rank=dist.rank,
                                    world_size=dist.world_size, drop_last=dist.drop_last)
        total, count = 0.0, 0
        bar = tqdm(batches, total=steps_per_epoch(self.data, t, dist), desc=f"epoch {epoch + 1}",
                   leave=False, disable=None, file=sys.stderr)
        for x, y in bar:
            opt.zero_grad(set_to_none=True)
            loss = method.train_step(model, x, y)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss ({loss.item()}) in epoch {epoch + 1}; the "
                                    "last good checkpoint is kept: lower lr or check the data")
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(y), count + len(y)
        return total / max(1, count)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, method: Method, synops: bool = False) -> Evaluation:
        """Test accuracy and firing rates over the test split (+ SynOps when asked); the
        split is the fixed subset when test_subset is set."""
        t = self.cfg.train
        net = method.inference_model(model, self.data).eval()
        layers = method.spiking_layers(net)
        counter = M.SpikeCounter(layers)
        ops = M.SynOpsCounter(net, layers) if synops else None
        correct = seen = 0
        with counter.attach(), ops.attach() if ops else contextlib.nullcontext():
            for x, y in self.data.batches("test", t.eval_batch_size, device=self.device):
                correct += int((method.logits(net, x).argmax(-1) == y).sum())
                seen += len(y)
        report = ops.report(seen, t.pj_per_ac, t.pj_per_mac) if ops else None
        return Evaluation(correct / max(1, seen), net, counter, report)

    def run_epoch(self, model: nn.Module, train_model: nn.Module, opt, sched, epoch: int,
                  history: dict[str, list]) -> Evaluation:
        """Train one epoch of the run, evaluate, append both to `history` and log them."""
        cfg, method = self.cfg, self.method
        t0 = time.perf_counter()
        loss = self.train_epoch(train_model, method, opt, sched, epoch)
        sync(self.device)
        seconds = time.perf_counter() - t0
        if not finite_state(model):  # a finite loss with non-finite gradients: do not save it
            raise TrainingError(f"non-finite weights after epoch {epoch + 1}; the last good "
                                "checkpoint is kept: lower lr or check the method's gradients")
        # the last epoch's pass also counts SynOps (one pass over the test set, not two)
        last = self.evaluate(model, method, synops=epoch + 1 == cfg.train.epochs)
        acc, total = last.accuracy, last.counter.total()
        for key, value in (("accuracy", acc), ("loss", loss), ("seconds", seconds),
                           ("rate", total)):
            history[key].append(value)
        rate = "-" if total is None else f"{100 * total:.2f}%"
        self.log(f"[{cfg.method} {cfg.dataset} T={cfg.time_steps} seed={cfg.seed}] epoch "
                 f"{epoch + 1}/{cfg.train.epochs} loss {loss:.4f} acc {100 * acc:.2f}% rate "
                 f"{rate} {seconds:.1f}s")
        return last

    def fit(self, model: nn.Module, method: Method, epochs: int) -> None:
        """Plain training for `epochs` (no checkpoints): used for pre-training stages."""
        opt = make_optimizer(model, self.cfg)
        sched = make_schedule(opt, self.cfg.train, self.data, self.dist, epochs)
        module = self.training_module(model, method)
        for epoch in range(epochs):
            loss = self.train_epoch(module, method, opt, sched, epoch)
            self.log(f"[pre-train {method.key or type(method).__name__}] epoch {epoch + 1}/"
                     f"{epochs} loss {loss:.4f}")


def finite_state(model: nn.Module) -> bool:
    return all(v.isfinite().all() for v in model.state_dict().values() if v.is_floating_point())


# ---- checkpoints ------------------------------------------------------------------------------


def checkpoint_path(out: Path) -> Path:
    return out.parent / "checkpoint.pt"


def load_checkpoint(path: Path, cfg: RunConfig) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a checkpoint: never a bare traceback
        raise TrainingError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to "
                            "restart this run from scratch") from None
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in CHECKPOINT_KEYS):
        raise TrainingError(f"{path}: not a checkpoint of this trainer; delete it to restart this "
                            "run from scratch")
    if ckpt["config_hash"] != cfg.hash:
        raise TrainingError(f"{path}: checkpoint of a different configuration; delete it to "
                            "restart, or rerun with the arguments that wrote it")
    return ckpt


def resume(ckpt: dict[str, Any], path: Path, model: nn.Module, opt, sched) -> tuple[dict, int]:
    """Load the state of `ckpt` (read from `path`); (history, epochs done)."""
    try:  # same config hash, but e.g. written by another version of the code
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise TrainingError(f"{path}: does not fit this model ({str(e).splitlines()[0]}); "
                            "delete it to restart this run from scratch") from None
    return ckpt["history"], ckpt["epoch"]


def save_checkpoint(path: Path, cfg: RunConfig, epoch: int, model: nn.Module, opt, sched,
                    history: dict[str, list]) -> None:
    """The state after `epoch` epochs, written atomically: a kill mid-write keeps the last."""
    state = {"config_hash": cfg.hash, "epoch": epoch, "model": model.state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "rng": torch.get_rng_state(), "history": history}
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")


# ---- one run ----------------------------------------------------------------------------------


def run(cfg: RunConfig, method_cls: type[Method], out: Path, log=print,
        save_model: Path | None = None, dataset_plugins: dict[str, str] | None = None) -> dict:
    """Train and evaluate one configuration with `method_cls` (as `dsr.run.resolve` returns
    them); write `out` (metrics.json) atomically at the end, and with `save_model` the trained
    weights (a model.pt that `dsr.convert` loads) before it. dataset_plugins registers
    out-of-tree datasets ({key: module:Class})."""
    start = started()
    device = pick_device(cfg.train.device)
    dist = init_distributed(device)
    set_seed(cfg, device)
    data = load_data(cfg, dataset_plugins)
    method: Method = method_cls(cfg)
    if method.source_method is not None:
        method.converted = False  # training its ANN: evaluate that ANN (`dsr.convert` converts it)
    trainer = Trainer(cfg, method, data, device, dist, log)
    model, last, history = train(trainer, out)
    metrics = final_metrics(cfg, method, data, device, last, history, start, dist.world_size)
    if dist.main:
        if save_model is not None:
            write_model(save_model, model, cfg, metrics)
        write_metrics(out, metrics)
    return metrics


def train(trainer: Trainer, out: Path) -> tuple[nn.Module, Evaluation, dict[str, list]]:
    """Build the model (or resume it from the checkpoint next to `out`) and train it for the
    run's epochs, a checkpoint after each; (model, its last evaluation, per-epoch history)."""
    cfg, method, data, dist = trainer.cfg, trainer.method, trainer.data, trainer.dist
    t = cfg.train
    model = method.build(cfg.arch, data.info).to(trainer.device)
    ckpt_path = checkpoint_path(out)
    ckpt = load_checkpoint(ckpt_path, cfg)
    if ckpt is None:
        model = method.prepare(model, data, trainer).to(trainer.device)
    train_model = trainer.training_module(model, method)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, t, data, dist, t.epochs)
    history: dict[str, list] = {"accuracy": [], "loss": [], "seconds": [], "rate": []}
    first = 0
    if ckpt is not None:
        history, first = resume(ckpt, ckpt_path, model, opt, sched)
        trainer.log(f"resuming {out} from epoch {first} ({ckpt_path})")
    if dist.main:
        remove_stale_temps(ckpt_path)
        remove_stale_temps(out)
    last: Evaluation | None = None
    for epoch in range(first, t.epochs):
        last = trainer.run_epoch(model, train_model, opt, sched, epoch, history)
        if dist.main:
            save_checkpoint(ckpt_path, cfg, epoch + 1, model, opt, sched, history)
        if t.fail_at_epoch is not None and epoch + 1 == t.fail_at_epoch:
            raise TrainingError(f"fail_at_epoch={t.fail_at_epoch} reached (a deliberate failure "
                                "for testing retries); remove the setting to train normally")
    if last is None:  # resumed after the last epoch's checkpoint
        last = trainer.evaluate(model, method, synops=True)
    return model, last, history


def write_model(path: Path, model: nn.Module, cfg: RunConfig, metrics: dict[str, Any]) -> None:
    """The trained weights with what produced them (the last epoch's: what conversion uses)."""
    state = {"method": cfg.method, "dataset": cfg.dataset, "arch": cfg.arch, "seed": cfg.seed,
             "config": cfg.to_dict(), "config_hash": cfg.hash,
             "accuracy": metrics["accuracy"]["final"],
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")


# ---- metrics.json -----------------------------------------------------------------------------


def final_metrics(cfg: RunConfig, method: Method, data: dsr_data.Dataset, device: torch.device,
                  last: Evaluation, history: dict[str, list], start: Start, world_size: int,
                  batch: int | None = None) -> dict[str, Any]:
    """metrics.json: latency timed at batch 1 and at `batch` (default eval_batch_size) and the
    peak memory measured now, then recorded with the run's evaluation and history."""
    x, _ = next(iter(data.batches("test", batch or cfg.train.eval_batch_size, device=device)))
    ms = measure_latency(lambda inp: method.logits(last.net, inp), x, cfg.train.latency_batches)
    return metrics_record(cfg, method, data.info, last, history, latency=ms,
                          memory=peak_memory(device), device=str(device),
                          prov=provenance(device, start, world_size))


def metrics_record(cfg: RunConfig, method: Method, info: dsr_data.DataInfo, last: Evaluation,
                   history: dict[str, list], latency: dict[str, float], memory: tuple[int, str],
                   device: str, prov: dict[str, Any]) -> dict[str, Any]:
    """metrics.json from values already measured (nothing is timed or run here); the best epoch
    is the first with the highest test accuracy."""
    counter, acc = last.counter, history["accuracy"]
    names = [n for n, m in last.net.named_modules() if any(m is s for s in counter.layers)]
    best = max(range(len(acc)), key=lambda i: acc[i])
    return {
        "schema_version": SCHEMA_VERSION,
        "method": cfg.method, "category": method.category, "dataset": cfg.dataset,
        "arch": cfg.arch, "neuron": method.neuron, "time_steps": cfg.time_steps,
        "seed": cfg.seed, "mode": cfg.mode, "epochs": cfg.train.epochs,
        "data": {"name": info.name, "num_classes": info.num_classes,
                 "train_size": info.train_size, "test_size": info.test_size,
                 "split": info.split, "source": info.source,
                 "preprocessing": info.preprocessing},
        "accuracy": {"best": acc[best], "final": acc[-1], "best_epoch": best + 1,
                     "per_epoch": acc, "validation_selected": None},
        "train_loss": history["loss"],
        "firing_rate": {"per_layer": counter.per_layer(), "layer_names": names,
                        "total": counter.total(), "per_epoch_total": history["rate"]},
        "synops": last.synops,
        "latency": {"time_steps": cfg.time_steps, "ms_per_sample": latency, "device": device},
        "cost": {"seconds_per_epoch": history["seconds"], "peak_memory_bytes": memory[0],
                 "peak_memory_kind": memory[1]},
        "config": cfg.to_dict(), "config_hash": cfg.hash,
        "provenance": prov,
    }
