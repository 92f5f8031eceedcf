"""The shared harness: one run = data, method, optimiser, schedule, epochs, metrics.json.

Reads top to bottom: set-up -> resume -> epochs (train, evaluate, checkpoint) -> final metrics.
Deterministic on CPU given the seed: batches depend on (seed, epoch) only and the RNG state is
checkpointed, so a run killed at any point and rerun with the same arguments resumes and ends
with the same metrics. Runs under torchrun with DistributedDataParallel (gloo on CPU, nccl on GPU);
DDP averages gradients, so dL/dv_th is never multiplied by the number of processes.
`convert` is the other entry point: no training, one converted SNN evaluated over a latency
sweep (ANN-to-SNN conversion methods, `python -m dsr.run --from-checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm import tqdm

from dsr import REPO_ROOT
from dsr import data as dsr_data
from dsr import metrics as M
from dsr.config import EVAL_ONLY, NOT_IDENTITY, RunConfig, sweep_points
from dsr.method import Method
from dsr.results import SCHEMA_VERSION, atomic_write, remove_stale_temps, write_metrics

PACKAGES = ("torch", "torchvision", "spikingjelly", "numpy", "snakemake")
CHECKPOINT_KEYS = ("config_hash", "epoch", "model", "optimizer", "scheduler", "rng", "history")
MODEL_KEYS = ("method", "dataset", "arch", "seed", "config", "config_hash", "accuracy",
              "state_dict")
# samples x time steps per forward of a latency sweep: the network holds every step of every
# layer at once ([T*B, ...]), so a sweep to T_max evaluates 8192 // T_max images at a time
# (eval_batch_size 256 at T = 32; at T = 1024 a CIFAR ResNet-18 layer is 2 GB, not 68)
SWEEP_SAMPLE_STEPS = 8192


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, incompatible checkpoint); message says why."""


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


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


@dataclass(frozen=True)
class Start:
    """When a run started and which code it started with: read then, not when it ends, so a
    commit made while a long run trains is not recorded as the code that ran."""

    time: str
    git_commit: str | None
    git_dirty: bool | None  # tracked files differ from git_commit


def started() -> Start:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return Start(now(), git("rev-parse", "HEAD"), None if status is None else bool(status))


def provenance(device: torch.device, start: Start, world_size: int) -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    packages["python"] = platform.python_version()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"git_commit": start.git_commit, "git_dirty": start.git_dirty,
            "packages": packages, "device": f"{device.type}: {name or platform.machine()}",
            "start_time": start.time, "end_time": now(), "hostname": socket.gethostname(),
            "world_size": world_size}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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
        t = self.cfg.train
        model.train()
        # batch_size is the global batch; each rank takes its share (the data layer's contract);
        # under DDP the ragged last batch is dropped so no rank gets an empty share
        ddp = self.dist.world_size > 1
        batches = self.data.batches("train", t.batch_size, epoch=epoch, seed=self.cfg.seed,
                                    device=self.device, rank=self.dist.rank,
                                    world_size=self.dist.world_size, drop_last=ddp)
        n = self.data.num_batches("train", t.batch_size, world_size=self.dist.world_size,
                                  drop_last=ddp)
        total, count = 0.0, 0
        bar = tqdm(batches, total=n, desc=f"epoch {epoch + 1}", leave=False, disable=None,
                   file=sys.stderr)
        for x, y in bar:
            loss = method.loss(method.train_outputs(model, x), y)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss ({loss.item()}) in epoch {epoch + 1}; the "
                                    "last good checkpoint is kept: lower lr or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
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

    def fit(self, model: nn.Module, method: Method, epochs: int) -> None:
        """Plain training for `epochs` (no checkpoints): used for pre-training stages."""
        opt = make_optimizer(model, self.cfg)
        ddp = self.dist.world_size > 1
        n = self.data.num_batches("train", self.cfg.train.batch_size,
                                  world_size=self.dist.world_size, drop_last=ddp)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(self.cfg.train.warmup_iters, epochs * n))
        module = self.training_module(model, method)
        for epoch in range(epochs):
            loss = self.train_epoch(module, method, opt, sched, epoch)
            self.log(f"[pre-train {method.key or type(method).__name__}] epoch {epoch + 1}/"
                     f"{epochs} loss {loss:.4f}")


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


def finite_state(model: nn.Module) -> bool:
    return all(v.isfinite().all() for v in model.state_dict().values() if v.is_floating_point())


def run(cfg: RunConfig, method_cls: type[Method], out: Path, log=print,
        save_model: Path | None = None, dataset_plugins: dict[str, str] | None = None) -> dict:
    """Train and evaluate one configuration with `method_cls` (as `dsr.run.resolve` returns
    them); write `out` (metrics.json) atomically at the end, and with `save_model` the trained
    weights (a model.pt that `convert` loads) before it. dataset_plugins registers out-of-tree
    datasets ({key: module:Class})."""
    start = started()
    device = pick_device(cfg.train.device)
    dist = init_distributed(device)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    t = cfg.train
    data = dsr_data.load(cfg.dataset, t.data_root, download=t.download,
                         train_subset=t.train_subset, test_subset=t.test_subset,
                         dvs_split=t.dvs_split, dvs_reader=t.dvs_reader, frames=t.frames,
                         plugins=dataset_plugins)
    method: Method = method_cls(cfg)
    if method.source_method is not None:
        method.converted = False  # training its ANN: evaluate that ANN (`convert` converts it)
    model = method.build(cfg.arch, data.info).to(device)
    trainer = Trainer(cfg, method, data, device, dist, log)

    ckpt_path = checkpoint_path(out)
    ckpt = load_checkpoint(ckpt_path, cfg)
    history: dict[str, list] = {"accuracy": [], "loss": [], "seconds": [], "rate": []}
    if ckpt is None:
        model = method.prepare(model, data, trainer).to(device)
    train_model = trainer.training_module(model, method)
    opt = make_optimizer(model, cfg)
    n_batches = data.num_batches("train", t.batch_size, world_size=dist.world_size,
                                 drop_last=dist.world_size > 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t.warmup_iters, t.epochs * n_batches))
    first = 0
    if ckpt is not None:
        try:  # same config hash, but e.g. written by another version of the code
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise TrainingError(f"{ckpt_path}: does not fit this model ({str(e).splitlines()[0]}"
                                "); delete it to restart this run from scratch") from None
        history, first = ckpt["history"], ckpt["epoch"]
        log(f"resuming {out} from epoch {first} ({ckpt_path})")
    if dist.main:
        remove_stale_temps(ckpt_path)
        remove_stale_temps(out)

    last: Evaluation | None = None
    for epoch in range(first, t.epochs):
        t0 = time.perf_counter()
        loss = trainer.train_epoch(train_model, method, opt, sched, epoch)
        M.sync(device)
        seconds = time.perf_counter() - t0
        if not finite_state(model):  # a finite loss with non-finite gradients: do not save it
            raise TrainingError(f"non-finite weights after epoch {epoch + 1}; the last good "
                                "checkpoint is kept: lower lr or check the method's gradients")
        # the last epoch's pass also counts SynOps (one pass over the test set, not two)
        last = trainer.evaluate(model, method, synops=epoch + 1 == t.epochs)
        acc, counter = last.accuracy, last.counter
        history["accuracy"].append(acc)
        history["loss"].append(loss)
        history["seconds"].append(seconds)
        history["rate"].append(counter.total())
        rate = "-" if counter.total() is None else f"{100 * counter.total():.2f}%"
        log(f"[{cfg.method} {cfg.dataset} T={cfg.time_steps} seed={cfg.seed}] epoch "
            f"{epoch + 1}/{t.epochs} loss {loss:.4f} acc {100 * acc:.2f}% rate {rate} "
            f"{seconds:.1f}s")
        if dist.main:
            state = {"config_hash": cfg.hash, "epoch": epoch + 1, "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": torch.get_rng_state(), "history": history}
            atomic_write(ckpt_path, lambda f, s=state: torch.save(s, f), mode="wb")
        if t.fail_at_epoch is not None and epoch + 1 == t.fail_at_epoch:
            raise TrainingError(f"fail_at_epoch={t.fail_at_epoch} reached (a deliberate failure "
                                "for testing retries); remove the setting to train normally")

    if last is None:  # resumed after the last epoch's checkpoint
        last = trainer.evaluate(model, method, synops=True)
    metrics = final_metrics(cfg, method, trainer, last, history, start, dist)
    if dist.main:
        if save_model is not None:
            write_model(save_model, model, cfg, metrics)
        write_metrics(out, metrics)
    return metrics


def write_model(path: Path, model: nn.Module, cfg: RunConfig, metrics: dict[str, Any]) -> None:
    """The trained weights with what produced them (the last epoch's: what conversion uses)."""
    state = {"method": cfg.method, "dataset": cfg.dataset, "arch": cfg.arch, "seed": cfg.seed,
             "config": cfg.to_dict(), "config_hash": cfg.hash,
             "accuracy": metrics["accuracy"]["final"],
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")


# ---- conversion: one trained ANN, evaluated over a latency sweep ------------------------------


def load_model(path: Path, cfg: RunConfig, method: Method) -> dict[str, Any]:
    """A model.pt written by `write_model`, checked against the conversion run `cfg`."""
    where = f"--from-checkpoint {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{where}: no such file; train the {method.source_method} run that "
                            "writes it first (python -m dsr.run ... --save-model PATH)") from None
    except Exception as e:  # truncated or not a torch file: never a bare traceback
        raise TrainingError(f"{where}: unreadable ({type(e).__name__}); rerun the job that "
                            "wrote it") from None
    if not isinstance(state, dict) or not all(k in state for k in MODEL_KEYS):
        raise TrainingError(f"{where}: not a model.pt of `python -m dsr.run --save-model`")
    if state["method"] != method.source_method:
        raise TrainingError(f"{where}: holds a {state['method']!r} model; {cfg.method} converts "
                            f"the model.pt of a {method.source_method!r} run")
    for name in ("dataset", "arch", "seed"):
        if state[name] != getattr(cfg, name):
            raise TrainingError(f"{where}: trained with {name}={state[name]!r}, this run has "
                                f"{name}={getattr(cfg, name)!r}; pass the same --{name}")
    trained, mine = state["config"]["train"], dataclasses.asdict(cfg.train)
    for key, value in mine.items():
        if key not in NOT_IDENTITY + EVAL_ONLY and trained.get(key) != value:
            raise TrainingError(f"{where}: trained with {key}={trained.get(key)!r}, this run "
                                f"says {key}={value!r}; pass the --epochs/--set of the run "
                                "that trained it")
    if method.source_method == cfg.method:  # its own ANN (qcfs): the same hyperparameters
        for key, value in cfg.params.items():
            if state["config"]["params"].get(key) != value:
                raise TrainingError(f"{where}: trained with {key}="
                                    f"{state['config']['params'].get(key)!r}, this run says "
                                    f"{key}={value!r}; pass the --set of the run that trained it")
    return state


def convert(cfg: RunConfig, method_cls: type[Method], out: Path, source: Path,
            extra_points: list[int], log=print,
            dataset_plugins: dict[str, str] | None = None) -> dict:
    """Convert a trained ANN (`source`, a model.pt) once and evaluate it for T_max =
    cfg.time_steps steps; write `out` with the latency sweep: accuracy, SynOps and energy of
    every prefix t in `sweep_points` from the same pass (the SNN is causal and its input
    constant, so the running mean of the output over the first t steps is the T = t result)."""
    start = started()
    device = pick_device(cfg.train.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError("conversion evaluates in one process; run it without torchrun")
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    method = method_cls(cfg)
    if method.source_method is None:
        raise TrainingError(f"--from-checkpoint converts a trained ANN; {cfg.method} is not an "
                            "ANN-to-SNN conversion method")
    state = load_model(source, cfg, method)
    t = cfg.train
    data = dsr_data.load(cfg.dataset, t.data_root, download=t.download,
                         train_subset=t.train_subset, test_subset=t.test_subset,
                         dvs_split=t.dvs_split, dvs_reader=t.dvs_reader, frames=t.frames,
                         plugins=dataset_plugins)
    ann = method.build(cfg.arch, data.info)
    try:
        ann.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise TrainingError(f"--from-checkpoint {source}: does not fit {cfg.method}'s "
                            f"{cfg.arch} ({str(e).splitlines()[0]})") from None
    ann = ann.to(device).eval()
    remove_stale_temps(out)
    T = cfg.time_steps
    points = sweep_points(T, extra_points)
    t0 = time.perf_counter()
    net = method.inference_model(ann, data).eval()  # calibrates on training batches
    if net.output_neuron is not None:
        raise TrainingError(f"{cfg.method}: the latency sweep reads the FC outputs of a network "
                            "without an output neuron")
    layers = method.spiking_layers(net)
    counter, ops = M.SpikeCounter(layers), M.SynOpsCounter(net, layers, time_steps=T)
    outputs: list[torch.Tensor] = []
    grab = net.fc.register_forward_hook(lambda m, i, o: outputs.append(o))
    prefix = torch.tensor(points, device=device) - 1
    correct, seen = torch.zeros(len(points), dtype=torch.long), 0
    chunk = max(1, SWEEP_SAMPLE_STEPS // T)
    try:
        with torch.no_grad(), counter.attach(), ops.attach():
            for batch, labels in data.batches("test", t.eval_batch_size, device=device):
                # batch [B, ...] or [T, B, ...]: the sample axis is the 4th from the end
                for x, y in zip(batch.split(chunk, batch.dim() - 4), labels.split(chunk),
                                strict=True):
                    outputs.clear()
                    net(x)
                    (seq,) = outputs  # [T, B, K]: the FC's output at every step
                    running = seq.cumsum(0)[prefix]  # argmax of a sum = argmax of the mean
                    correct += (running.argmax(-1) == y).sum(1).cpu()
                    seen += len(y)
    finally:
        grab.remove()
    M.sync(device)
    seconds = time.perf_counter() - t0
    if seen == 0:
        raise TrainingError("the test split is empty; nothing to evaluate")
    sweep = []
    for i, p in enumerate(points):
        rep = ops.report(seen, t.pj_per_ac, t.pj_per_mac, steps=p)
        sweep.append({"T": p, "accuracy": int(correct[i]) / seen, "synops": rep["total_ac"],
                      "energy_pj": rep["energy_pj"]})
        log(f"[{cfg.method} {cfg.dataset} seed={cfg.seed}] T={p} acc "
            f"{100 * sweep[-1]['accuracy']:.2f}% SynOps {rep['total_ac']:.4g}")
    trainer = Trainer(cfg, method, data, device, Dist(), log)
    last = Evaluation(sweep[-1]["accuracy"], net, counter, ops.report(seen, t.pj_per_ac,
                                                                      t.pj_per_mac))
    history = {"accuracy": [last.accuracy], "loss": [], "seconds": [],
               "rate": [counter.total()]}
    metrics = final_metrics(cfg, method, trainer, last, history, start, Dist(), batch=chunk)
    metrics["latency_sweep"] = {"T_max": T, "points": sweep}
    metrics["converted_from"] = {"path": str(source), "method": state["method"],
                                 "config_hash": state["config_hash"],
                                 "accuracy": state["accuracy"]}
    metrics["cost"]["eval_seconds"] = seconds
    write_metrics(out, metrics)
    return metrics


def final_metrics(cfg: RunConfig, method: Method, trainer: Trainer, last: Evaluation,
                  history: dict[str, list], start: Start, dist: Dist,
                  batch: int | None = None) -> dict[str, Any]:
    """metrics.json; latency is timed at batch 1 and at `batch` (default eval_batch_size)."""
    device, data = trainer.device, trainer.data
    net, counter = last.net, last.counter
    names = [n for n, m in net.named_modules() if any(m is s for s in counter.layers)]
    x, _ = next(iter(data.batches("test", batch or cfg.train.eval_batch_size, device=device)))
    one = x[..., :1, :, :, :] if x.dim() == 5 else x[:1]
    fn = lambda inp: method.logits(net, inp)  # noqa: E731
    reps = cfg.train.latency_batches
    ms = {"batch_1": M.latency_ms(fn, one, reps), f"batch_{x.shape[-4]}": M.latency_ms(fn, x, reps)}
    peak, kind = M.peak_memory(device)
    best = max(range(len(history["accuracy"])), key=lambda i: history["accuracy"][i])
    info = data.info
    return {
        "schema_version": SCHEMA_VERSION,
        "method": cfg.method, "category": method.category, "dataset": cfg.dataset,
        "arch": cfg.arch, "neuron": method.neuron, "time_steps": cfg.time_steps,
        "seed": cfg.seed, "mode": cfg.mode, "epochs": cfg.train.epochs,
        "data": {"name": info.name, "num_classes": info.num_classes,
                 "train_size": info.train_size, "test_size": info.test_size,
                 "split": info.split, "source": info.source,
                 "preprocessing": info.preprocessing},
        "accuracy": {"best": history["accuracy"][best], "final": history["accuracy"][-1],
                     "best_epoch": best + 1, "per_epoch": history["accuracy"],
                     "validation_selected": None},
        "train_loss": history["loss"],
        "firing_rate": {"per_layer": counter.per_layer(), "layer_names": names,
                        "total": counter.total(), "per_epoch_total": history["rate"]},
        "synops": last.synops,
        "latency": {"time_steps": cfg.time_steps, "ms_per_sample": ms, "device": str(device)},
        "cost": {"seconds_per_epoch": history["seconds"], "peak_memory_bytes": peak,
                 "peak_memory_kind": kind},
        "config": cfg.to_dict(), "config_hash": cfg.hash,
        "provenance": provenance(device, start, dist.world_size),
    }
