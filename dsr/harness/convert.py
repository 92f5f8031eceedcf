"""ANN-to-SNN conversion, the harness's other entry point (`python -m dsr.run --from-checkpoint`):
no training; the ANN of a model.pt (`dsr.harness.checkpoint.write_model`) is converted once and the
SNN evaluated over a latency sweep, every prefix t of one T_max-step pass."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsr import data as dsr_data
from dsr.config import TRAINING_KEYS, RunConfig, sweep_points
from dsr.harness import metrics as M
from dsr.harness import preflight
from dsr.harness.cost import peak_memory, sync
from dsr.harness.evaluate import Evaluation, evaluated, latency, run_pass
from dsr.harness.provenance import Start, run_provenance, started
from dsr.harness.record import (
    ConvertedFrom,
    LatencySweep,
    RunRecord,
    SweepPoint,
    converted_record,
    diverged_conversion,
)
from dsr.harness.results import remove_stale_temps, run_lock
from dsr.harness.train import TrainingError, load_data, pick_device, set_seed
from dsr.method import Method
from dsr.stages import CONVERT

MODEL_KEYS = ("method", "dataset", "arch", "seed", "config", "config_hash", "accuracy",
              "state_dict")
# samples x time steps per forward of a latency sweep: the network holds every step of every
# layer at once ([T*B, ...]), so a sweep to T_max evaluates 8192 // T_max images at a time
# (eval_batch_size 256 at T = 32; at T = 1024 a CIFAR ResNet-18 layer is 2 GB, not 68)
SWEEP_SAMPLE_STEPS = 8192


def read_model(path: Path, source_method: str | None = None) -> dict[str, Any]:
    """A model.pt written by `dsr.harness.checkpoint.write_model` (its config_hash is the `source`
    of the conversion run that converts it; `source_method`: the method that trains it, for the
    error message); see check_model."""
    where = f"--from-checkpoint {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{where}: no such file; train the {source_method or 'source'} run "
                            "that writes it first (python -m dsr.run ... --save-model PATH)"
                            ) from None
    except Exception as e:  # truncated or not a torch file: never a bare traceback
        raise TrainingError(f"{where}: unreadable ({type(e).__name__}); rerun the job that "
                            "wrote it") from None
    if not isinstance(state, dict) or not all(k in state for k in MODEL_KEYS):
        raise TrainingError(f"{where}: not a model.pt of `python -m dsr.run --save-model`")
    return state


def check_model(state: dict[str, Any], path: Path, cfg: RunConfig, method: Method) -> None:
    """The model must be the `source` run's, of the conversion's method, data, arch and seed,
    trained with the conversion run's training settings (which calibrate on training batches)."""
    where = f"--from-checkpoint {path}"
    if state["config_hash"] != cfg.source:
        raise TrainingError(f"{where}: holds run {state['config_hash']}, this conversion "
                            f"converts run {cfg.source}")
    if state["method"] != method.source_method:
        raise TrainingError(f"{where}: holds a {state['method']!r} model; {cfg.method} converts "
                            f"the model.pt of a {method.source_method!r} run")
    for name in ("dataset", "arch", "seed"):
        if state[name] != getattr(cfg, name):
            raise TrainingError(f"{where}: trained with {name}={state[name]!r}, this run has "
                                f"{name}={getattr(cfg, name)!r}; pass the same --{name}")
    trained, mine = state["config"]["train"], dataclasses.asdict(cfg.train)
    for key in sorted(TRAINING_KEYS):
        if trained.get(key) != mine[key]:
            raise TrainingError(f"{where}: trained with {key}={trained.get(key)!r}, this run "
                                f"says {key}={mine[key]!r}; pass the --epochs/--set of the run "
                                "that trained it")
    trained_data = RunConfig.from_dict(state["config"]).data_params  # older files: in train
    for key, value in cfg.data_params.items():  # the same dataset settings (e.g. DVS frames)
        if trained_data.get(key) != value:
            raise TrainingError(f"{where}: trained with {key}={trained_data.get(key)!r}, this "
                                f"run says {key}={value!r}; pass the --set of the run that "
                                "trained it")
    if method.source_method == cfg.method:  # its own ANN (qcfs): the same hyperparameters
        for key, value in cfg.params.items():
            if state["config"]["params"].get(key) != value:
                raise TrainingError(f"{where}: trained with {key}="
                                    f"{state['config']['params'].get(key)!r}, this run says "
                                    f"{key}={value!r}; pass the --set of the run that trained it")


def load_ann(state: dict[str, Any], source: Path, cfg: RunConfig, method: Method,
             data: dsr_data.Dataset, device: torch.device) -> nn.Module:
    ann = method.build(cfg.arch, data.info)
    try:
        ann.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise TrainingError(f"--from-checkpoint {source}: does not fit {cfg.method}'s "
                            f"{cfg.arch} ({str(e).splitlines()[0]})") from None
    return ann.to(device).eval()


def convert(cfg: RunConfig, method_cls: type[Method], out: Path, source: Path,
            extra_points: list[int], log=print,
            state: dict[str, Any] | None = None) -> RunRecord:
    """Convert a trained ANN (`source`, a model.pt; `state`, its contents if already read) once
    and evaluate it for T_max = cfg.time_steps steps; write `out` with the latency sweep:
    accuracy, SynOps and energy of every prefix t in `sweep_points` from the same pass (the SNN
    is causal and its input constant, so the running mean of the output over the first t steps
    is the T = t result). A model whose training diverged is recorded as diverged here too."""
    start = started()
    device = pick_device(cfg.train.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError("conversion evaluates in one process; run it without torchrun")
    set_seed(cfg, device)
    method = method_cls(cfg)
    if CONVERT not in method.stages():
        raise TrainingError(f"--from-checkpoint converts a trained ANN; {cfg.method} is not an "
                            "ANN-to-SNN conversion method")
    state = read_model(source) if state is None else state
    check_model(state, source, cfg, method)
    data = load_data(cfg)
    chunk = max(1, SWEEP_SAMPLE_STEPS // cfg.time_steps)
    preflight.footprint(cfg, method.model_options(data.info), data.info).refuse_above(
        preflight.available_memory(device), cfg.time_steps, chunk, "conversion sweep")
    with run_lock(out):
        return evaluate_sweep(cfg, method, out, source, state, extra_points, data, device, start,
                              log)


def evaluate_sweep(cfg: RunConfig, method: Method, out: Path, source: Path, state: dict,
                   extra_points: list[int], data: dsr_data.Dataset, device: torch.device,
                   start: Start, log) -> RunRecord:
    """`convert`'s work once it holds the run's lock: the sweep, or a diverged model's record."""
    remove_stale_temps(out)
    if state.get("diverged"):
        div = state["diverged"]
        rec = diverged_conversion(cfg, method, data.info,
                                  f"the converted model diverged: {div['reason']}", div["epoch"],
                                  peak_memory(device), str(device),
                                  run_provenance(cfg, device, start, 1))
        log(f"{source} diverged in training; recorded as diverged in {out}")
        rec.write(out)
        return rec
    chunk = max(1, SWEEP_SAMPLE_STEPS // cfg.time_steps)
    ann = load_ann(state, source, cfg, method, data, device)
    points = sweep_points(cfg.time_steps, extra_points)
    t0 = time.perf_counter()
    net, layers = evaluated(ann, method, CONVERT, data)  # calibrates on training batches
    prefix, counter, ops = sweep(cfg, net, layers, method, data, points, chunk, device)
    sync(device)
    seconds = time.perf_counter() - t0
    if prefix.seen == 0:
        raise TrainingError("the test split is empty; nothing to evaluate")
    t = cfg.train
    rows = sweep_rows(cfg, points, prefix.correct, prefix.seen, ops, log)
    last = Evaluation(rows[-1].accuracy, net, counter,
                      ops.report(prefix.seen, t.pj_per_ac, t.pj_per_mac))
    ms = latency(net, method, data, cfg, device, batch=chunk)
    source_run = ConvertedFrom(str(source), state["method"], state["config_hash"],
                               state["accuracy"])
    rec = converted_record(cfg, method, data.info, last, LatencySweep(cfg.time_steps, rows),
                           source_run, ms, peak_memory(device), seconds, str(device),
                           run_provenance(cfg, device, start, 1))
    rec.write(out)
    return rec


class PrefixAccuracy:
    """Correct answers at every prefix t in `points` of one T_max-step pass: the FC's outputs
    at every step, summed over the first t (argmax of a sum = argmax of the mean)."""

    def __init__(self, net: nn.Module, points: list[int], device: torch.device):
        self.fc, self.outputs = net.fc, []
        self.prefix = torch.tensor(points, device=device) - 1
        self.correct, self.seen = torch.zeros(len(points), dtype=torch.long), 0

    @contextlib.contextmanager
    def attach(self) -> Iterator[PrefixAccuracy]:
        grab = self.fc.register_forward_hook(lambda m, i, o: self.outputs.append(o))
        try:
            yield self
        finally:
            grab.remove()

    def update(self, logits: Tensor, y: Tensor) -> None:
        (seq,) = self.outputs  # [T, B, K]: the FC's output at every step
        self.outputs.clear()
        running = seq.cumsum(0)[self.prefix]
        self.correct += (running.argmax(-1) == y).sum(1).cpu()
        self.seen += len(y)


def sweep(cfg: RunConfig, net: nn.Module, layers: list[nn.Module], method: Method,
          data: dsr_data.Dataset, points: list[int], chunk: int, device: torch.device
          ) -> tuple[PrefixAccuracy, M.SpikeCounter, M.SynOpsCounter]:
    """One T_max-step pass over the test split, `chunk` images per forward: the correct answers
    at every prefix in `points` and the counters of `layers` (SynOps kept per step)."""
    if net.output_neuron is not None:
        raise TrainingError(f"{cfg.method}: the latency sweep reads the FC outputs of a network "
                            "without an output neuron")
    counter, ops = M.SpikeCounter(layers), M.SynOpsCounter(net, layers, time_steps=cfg.time_steps)
    prefix = PrefixAccuracy(net, points, device)
    run_pass(net, method, data, "test", cfg.train.eval_batch_size, device, [counter, ops, prefix],
             chunk=chunk)
    return prefix, counter, ops


def sweep_rows(cfg: RunConfig, points: list[int], correct: Tensor, seen: int,
               ops: M.SynOpsCounter, log=print) -> list[SweepPoint]:
    """metrics.json "latency_sweep.points": accuracy, SynOps and energy at each prefix."""
    t, rows = cfg.train, []
    for i, p in enumerate(points):
        rep = ops.report(seen, t.pj_per_ac, t.pj_per_mac, steps=p)
        rows.append(SweepPoint(p, int(correct[i]) / seen, rep["total_ac"], rep["energy_pj"]))
        log(f"[{cfg.method} {cfg.dataset} seed={cfg.seed}] T={p} acc "
            f"{100 * rows[-1].accuracy:.2f}% SynOps {rep['total_ac']:.4g}")
    return rows
