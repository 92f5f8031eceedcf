"""Training-step benchmark: DSR fast, exact and approx mode vs SpikingJelly's DSRIFNode and BPTT.

    python -m bench.train_step [--quick] [--arch NAME ...] [--T 5 10 20] [--variants ...]
        [--threads N] [--device cpu|cuda] [--amp bf16] [--channels-last] [--heap-reuse]
        [--cosine] [--phases]

One step = forward + cross-entropy + backward + SGD (momentum) step at batch 32 on CIFAR-shaped
random input (3x32x32, 10 classes). Every variant builds the same `dsr.models` architecture (the
first layer of a static image runs once for all of them) from a different neuron factory:
  fast     our DSR-IF, `dsr.layers.fast_forward`: T-step record pass (+ BN's coupling term) and a
           batch-B backward; exact mode's gradients
  exact    our DSR-IF, autograd through the T-step network (official DSR backward per neuron)
  approx   our DSR-IF, `fast_forward(coupling=False)`: drops BN's coupling term (not exact)
  sj-dsr   SpikingJelly 2.0's DSRIFNode (official-style: saves all T inputs per neuron)
  sj-bptt  SpikingJelly's multi-step LIFNode, ATan surrogate, backpropagation through time
  infer    our DSR-IF forward alone under no_grad: the floor under fast's time and memory
Each configuration runs in a fresh spawned process (on CUDA in this one), in three parts:
a batch-2 step creates what persists (gradients, momentum, code pages, allocator state); the
first full step measures memory: `peak` is the growth of the peak RSS (glibc told to mmap every
block >= 128 KiB, so RSS follows live data; CUDA: max allocated) over the level before it, i.e.
what one step adds: saved activations, temporaries and gradients (zero_grad frees them before
each backward); then `step s` is the median wall time of n timed steps (glibc's default heap
again) and `cpu s` their median process CPU time (all threads; robust to other jobs).
`saved`: what autograd still keeps when backward starts (unique storages, parameters excluded),
O(T) for exact and BPTT, O(1) for fast and approx. `--cosine` adds the fast/approx-vs-exact
gradient cosine similarity, `--phases` only prints where a fast step's time goes. The last line is
`RATIOS fast/exact@T20=.. approx/exact@T20=.. fast/sj-dsr@T20=.. fast/sj-bptt@T20=..
mem-fast@T20/T5=.. fastsaved@T20/T5=..` for PreAct-ResNet-18 (the last architecture run; the
line before it says which).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass

VARIANTS = ("fast", "exact", "approx", "sj-dsr", "sj-bptt", "infer")
ARCHS = ("preact_resnet20", "preact_resnet18")
V_TH = 1.0  # same initial threshold for every variant; timing does not depend on it


@dataclass(frozen=True)
class Case:
    arch: str
    T: int
    variant: str
    batch: int
    threads: int
    device: str
    amp: str
    channels_last: bool
    warmup: int
    repeats: int
    max_seconds: float
    heap_reuse: bool = False


# ---- the child: one configuration in a fresh process -------------------------------------------


def _sj_neuron(variant: str, T: int):
    import torch
    from spikingjelly.activation_based import neuron, surrogate
    from torch import nn

    class SJNeuron(nn.Module):
        """A SpikingJelly multi-step node on [T, B, ...]; a [1, B, ...] constant input repeats."""

        def __init__(self):
            super().__init__()
            if variant == "sj-dsr":
                self.node = neuron.DSRIFNode(T=T, v_threshold=V_TH, alpha=0.5,
                                             v_threshold_lower_bound=0.01, step_mode="m")
            else:
                self.node = neuron.LIFNode(tau=2.0, v_threshold=V_TH,
                                           surrogate_function=surrogate.ATan(), step_mode="m")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] == 1:
                x = x.expand(T, *x.shape[1:])
            self.node.reset()  # stateless between calls, like ours
            return self.node(x)

    return SJNeuron


def _build(case: Case):
    import torch

    from dsr import models
    from dsr.layers import fast_forward
    from dsr.neuron import IFNeuron

    if case.variant in ("fast", "exact", "approx", "infer"):
        factory = functools.partial(IFNeuron, case.T, v_th=V_TH, lower_bound=0.01, alpha=0.5)
    else:
        factory = _sj_neuron(case.variant, case.T)
    model = models.create(case.arch, factory, num_classes=10)
    forward: Callable = model
    if case.variant in ("fast", "approx"):
        forward = functools.partial(fast_forward, model, coupling=case.variant == "fast")
    device = torch.device(case.device)
    fmt = torch.channels_last if case.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    return model, forward


MMAP_EXACT = 128 * 1024  # every block >= 128 KiB gets its own mapping, unmapped on free
MMAP_DEFAULT_MAX = 32 * 2**20  # where glibc's dynamic threshold settles on 64-bit


def _mallopt_mmap_threshold(nbytes: int) -> None:
    try:  # glibc: M_MMAP_THRESHOLD = -3; freed heap pages handed back first
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        libc.mallopt(-3, nbytes)
    except (OSError, AttributeError):
        pass


def _mallopt_heap_reuse() -> None:
    try:  # M_MMAP_MAX = -4 (0: never mmap), M_TRIM_THRESHOLD = -1 (never give pages back)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)
        libc.mallopt(-1, 2**31 - 1)
    except (OSError, AttributeError):
        pass


def _rss_peak_reset() -> bool:
    try:  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_kb(field: str) -> int:
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
        gc.collect()
        self.total = sum(dict((ptr, n) for ptr, n, ref in self.refs if ref() is not None).values())


def measure(case: Case) -> dict:
    """One configuration's row: the memory of one training step, then the median time of up to
    `case.repeats` more."""
    model, step = _setup(case)
    peak, saved = _step_memory(case, model, step)
    times, cpu_times = _step_times(case, step)
    return _row(case, model, peak, saved, times, cpu_times)


def _setup(case: Case) -> tuple:
    """(model, step) after a batch-2 step, which creates what persists (gradients, momentum,
    code pages) at little cost, so that the first full step's memory is what a step adds."""
    import torch

    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    model, forward = _build(case)
    step = _stepper(case, model, forward)
    model.train()
    step(batch=min(2, case.batch))
    gc.collect()
    _sync(case)
    return model, step


def _row(case: Case, model, peak: int, saved: int, times: list[float],
         cpu_times: list[float]) -> dict:
    step_s = statistics.median(times)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {**asdict(case), "step_s": step_s, "times": times,
            "cpu_s": statistics.median(cpu_times), "img_s": case.batch / step_s,
            "peak_bytes": peak, "saved_bytes": saved, "param_bytes": params}


def _sync(case: Case) -> None:
    import torch

    if case.device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(case.device))


def _stepper(case: Case, model, forward: Callable) -> Callable:
    """step(batch, hooks): one training step (or a no-grad forward for `infer`)."""
    import torch
    import torch.nn.functional as F

    device = torch.device(case.device)
    fmt = torch.channels_last if case.channels_last else torch.contiguous_format
    x = torch.randn(case.batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (case.batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    amp = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16,
                            enabled=case.amp == "bf16")

    def step(batch: int = case.batch, hooks: SavedBytes | None = None) -> None:
        if case.variant == "infer":
            with torch.no_grad(), amp():
                forward(x[:batch])
            return
        with amp():
            with (torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack)
                  if hooks is not None else contextlib.nullcontext()):
                out = forward(x[:batch])
            loss = F.cross_entropy(out.float(), y[:batch])
        if hooks is not None:
            hooks.snapshot()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _step_memory(case: Case, model, step: Callable) -> tuple[int, int]:
    """(peak, saved) bytes of the first full step, peak measured from the level before it."""
    peak_growth = _peak_meter(case)
    saved = SavedBytes(model)
    step(hooks=saved)
    _sync(case)
    return peak_growth(), saved.total


def _peak_meter(case: Case) -> Callable[[], int]:
    """Starts measuring now; the function returned gives the growth of the peak since, in bytes:
    CUDA max allocated, or CPU peak RSS with big blocks mmap'd so that RSS follows live data."""
    import torch

    device = torch.device(case.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        return lambda: torch.cuda.max_memory_allocated(device) - base
    _mallopt_mmap_threshold(MMAP_EXACT)
    if _rss_peak_reset():
        base = _rss_kb("VmRSS") * 1024
        return lambda: _rss_kb("VmHWM") * 1024 - base
    # no /proc: the lifetime peak bounds it from above
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def _step_times(case: Case, step: Callable) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of up to `case.repeats` timed steps after the warm-up:
    glibc's steady state (blocks < 32 MiB reused from the heap; bigger ones mmap'd and
    page-faulted afresh on every use), or with --heap-reuse every block from a heap that is
    never trimmed (no page faults after the first step)."""
    if not case.device.startswith("cuda"):
        _mallopt_mmap_threshold(MMAP_DEFAULT_MAX)
        if case.heap_reuse:
            _mallopt_heap_reuse()
    for _ in range(case.warmup - 1 + case.heap_reuse):
        step()
    times: list[float] = []
    cpu_times: list[float] = []  # process CPU seconds: robust to other jobs on a shared machine
    while len(times) < case.repeats:
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(case)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if sum(times) > case.max_seconds and (len(times) >= 2 or times[0] > case.max_seconds):
            break  # heavy configurations: two timed steps, one if a step alone exceeds the budget
    return times, cpu_times


def _child(case: Case, queue) -> None:
    try:
        queue.put(measure(case))
    except Exception as e:  # a variant that cannot run here (e.g. no kernel) is a row, not a crash
        queue.put({**asdict(case), "error": f"{type(e).__name__}: {e}",
                   "trace": traceback.format_exc(limit=3)})


def run_case(case: Case, timeout: float, in_process: bool = False) -> dict:
    if in_process:  # CUDA peak memory resets per configuration; saves a CUDA start-up each
        import torch

        try:
            return measure(case)
        except Exception as e:
            return {**asdict(case), "error": f"{type(e).__name__}: {e}"}
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(case, queue))
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = {**asdict(case), "error": f"no result within {timeout:.0f} s"}
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if proc.exitcode not in (0, None) and "error" not in result:
        result["error"] = f"child exited with {proc.exitcode}"
    return result


# ---- fast vs exact gradient agreement (issue 2: cosine similarity in BN training mode) ---------


def gradient_cosine(arch: str = "preact_resnet20", base_width: int = 8, T: int = 5,
                    batch: int = 16, seed: int = 0) -> list[dict]:
    """Cosine similarity of the fast- and approx-mode gradients with exact mode's, IF and LIF,
    BN train and eval, float64 (fast: 1 to rounding everywhere; approx: see BENCHMARKS.md)."""
    import torch
    import torch.nn.functional as F

    from dsr import models
    from dsr.layers import fast_forward
    from dsr.neuron import IFNeuron, LIFNeuron

    neurons = {"IF": functools.partial(IFNeuron, T, v_th=1.0, lower_bound=0.01),
               "LIF": functools.partial(LIFNeuron, T, v_th=0.3, lower_bound=0.0005, dt=0.05,
                                        alpha=0.3)}
    rows = []
    for name, factory in neurons.items():
        for bn_mode in ("train", "eval"):
            torch.manual_seed(seed)
            model = models.create(arch, factory, num_classes=10, base_width=base_width).double()
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, 3, 32, 32, generator=gen, dtype=torch.float64)
            y = torch.randint(0, 10, (batch,), generator=gen)
            if bn_mode == "eval":  # non-trivial running statistics first
                with torch.no_grad():
                    model.train()
                    model(x)
                model.eval()
            else:
                model.train()
            grads = {}
            for mode in ("exact", "fast", "approx"):
                model.zero_grad(set_to_none=True)
                state = {k: v.clone() for k, v in model.state_dict().items()}
                out = model(x) if mode == "exact" else fast_forward(model, x, mode == "fast")
                F.cross_entropy(out, y).backward()
                grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters()
                               if p.grad is not None}
                model.load_state_dict(state)  # same running statistics for every mode
            for mode in ("fast", "approx"):
                cosines = _cosines(grads["exact"], grads[mode])
                rows.append({"mode": mode, "neuron": name, "bn_mode": bn_mode, **cosines})
    return rows


def _cosines(a: dict, b: dict) -> dict:
    """Cosine per parameter group and the largest relative error; parameters whose exact
    gradient is ~0 (conv biases in front of a BN, thresholds that never see I above v_th) are
    rounding noise and left out."""
    import torch

    scale = max(float(g.abs().max()) for g in a.values())
    keys = sorted(k for k in a if float(a[k].abs().max()) > 1e-9 * scale)

    def cos(ks: list[str]) -> float:
        u = torch.cat([a[k].flatten() for k in ks])
        v = torch.cat([b[k].flatten() for k in ks])
        return float(torch.nn.functional.cosine_similarity(u, v, dim=0))

    groups = {"all": keys,
              "weights": [k for k in keys if a[k].dim() > 1],
              "v_th": [k for k in keys if k.endswith("v_th")],
              "bn_affine": [k for k in keys if a[k].dim() == 1]}
    out: dict = {g: cos(ks) if ks else "n/a" for g, ks in groups.items()}
    out["min_layer"], out["min_layer_name"] = min((cos([k]), k) for k in keys if a[k].dim() > 0)
    out["max_rel_err"] = max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in keys)
    return out


# ---- where a fast step's time goes ------------------------------------------------------------


def fast_phases(arch: str, T: int, batch: int = 32, repeats: int = 3, top: int = 8,
                coupling: bool = True) -> str:
    """Median seconds of a fast (coupling=False: approx) step's phases, then the record pass's
    costliest ops."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from dsr import models
    from dsr.layers import phase, record_pass
    from dsr.neuron import IFNeuron

    torch.manual_seed(0)
    model = models.create(arch, functools.partial(IFNeuron, T, v_th=V_TH, lower_bound=0.01),
                          num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times: dict[str, list[float]] = {"record": [], "represent": [], "backward": [], "sgd": []}
    for i in range(repeats + 1):  # the first is warm-up
        t = [time.perf_counter()]
        record_pass(model, x, coupling)
        t.append(time.perf_counter())
        with phase(model, "represent"):
            loss = F.cross_entropy(model(x), y)
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        if i:
            for k, a, b in zip(times, t, t[1:], strict=False):
                times[k].append(b - a)
    mode = "fast" if coupling else "approx"
    lines = [f"{mode}-mode phases, {arch} T={T} batch {batch} (median s): " + ", ".join(
        f"{k} {statistics.median(v):.3f}" for k, v in times.items())]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        record_pass(model, x, coupling)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    lines += [f"  record pass {e.key:<28} {e.self_cpu_time_total / 1e3:8.0f} ms "
              f"{100 * e.self_cpu_time_total / total:5.1f} %" for e in events[:top]]
    return "\n".join(lines)


# ---- the parent: plan, run, print ---------------------------------------------------------------


def machine_line(threads: int, device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    return (f"machine: {cpu}, {os.cpu_count()} CPUs{gpu}; torch {torch.__version__}; "
            f"torch.set_num_threads({threads}); load average {load}; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def table(results: list[dict]) -> str:
    head = (f"{'arch':<16} {'T':>3} {'variant':<8} {'step s':>8} {'cpu s':>8} {'n':>2} "
            f"{'img/s':>7} {'peak MiB':>9} {'saved MiB':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['arch']:<16} {r['T']:>3} {r['variant']:<8} error: {r['error']}")
            continue
        lines.append(f"{r['arch']:<16} {r['T']:>3} {r['variant']:<8} {r['step_s']:>8.3f} "
                     f"{r['cpu_s']:>8.3f} "
                     f"{len(r['times']):>2} {r['img_s']:>7.1f} {r['peak_bytes'] / 2**20:>9.0f} "
                     f"{r['saved_bytes'] / 2**20:>9.0f}")
    return "\n".join(lines)


def _get(results: list[dict], arch: str, T: int, variant: str, key: str) -> float:
    for r in results:
        if (r["arch"], r["T"], r["variant"]) == (arch, T, variant) and "error" not in r:
            return r[key]
    return math.nan


def ratios_line(results: list[dict], arch: str, Ts: list[int], key: str = "step_s") -> str:
    """Time ratios (`step_s` wall clock or `cpu_s`) at the largest T; memory: the fast mode's
    peak and saved activations at the largest T over the smallest."""
    hi, lo = max(Ts), min(Ts)

    def ratio(a: str, b: str, k: str = key, tb: int = hi) -> float:
        return _get(results, arch, hi, a, k) / _get(results, arch, tb, b, k)

    return (f"RATIOS fast/exact@T{hi}={ratio('fast', 'exact'):.3f} "
            f"approx/exact@T{hi}={ratio('approx', 'exact'):.3f} "
            f"fast/sj-dsr@T{hi}={ratio('fast', 'sj-dsr'):.3f} "
            f"fast/sj-bptt@T{hi}={ratio('fast', 'sj-bptt'):.3f} "
            f"mem-fast@T{hi}/T{lo}={ratio('fast', 'fast', 'peak_bytes', lo):.3f} "
            f"fastsaved@T{hi}/T{lo}={ratio('fast', 'fast', 'saved_bytes', lo):.3f}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.train_step",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: preact_resnet20 at T = 5 and 20, two timed steps")
    p.add_argument("--arch", nargs="+", choices=ARCHS, help=f"default: {' '.join(ARCHS)}")
    p.add_argument("--T", nargs="+", type=int, help="time steps (default 5 10 20)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0))
                   if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--amp", choices=("none", "bf16"), default="none",
                   help="bf16 autocast for the forward (CPU: AMX/AVX512-BF16 convolutions)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed full steps (the first one measures memory)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps at most")
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="stop timing a configuration after this many seconds (two timed "
                        "steps at least, one if a single step takes longer)")
    p.add_argument("--heap-reuse", action="store_true",
                   help="CPU: time with glibc serving every block from an untrimmed heap "
                        "(mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=max): no page faults")
    p.add_argument("--phases", action="store_true",
                   help="only print where a fast step's time goes (phases, record-pass ops) "
                        "for each --arch and --T, in this process, then exit")
    p.add_argument("--cosine", action="store_true",
                   help="also print the fast/approx-vs-exact gradient cosine similarity")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    p.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=None,
                   help="run configurations in this process (default: on CUDA only; CPU peak "
                        "RSS needs a fresh process per configuration)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"error: --device {args.device}: CUDA is not available; use --device cpu",
                  file=sys.stderr)
            return 2
    archs = list(args.arch or (["preact_resnet20"] if args.quick else ARCHS))
    Ts = sorted(args.T or ([5, 20] if args.quick else [5, 10, 20]))
    if min(Ts) < 1 or args.batch < 1 or args.threads < 1:
        print("error: --T, --batch and --threads must be positive integers", file=sys.stderr)
        return 2
    if args.phases:
        import torch

        torch.set_num_threads(args.threads)
        print(machine_line(args.threads, "cpu"))
        for arch in archs:
            for T in Ts:
                for coupling in (True, False):
                    print(fast_phases(arch, T, args.batch, coupling=coupling), flush=True)
        return 0
    repeats = 2 if args.quick else args.repeats
    in_process = args.device.startswith("cuda") if args.in_process is None else args.in_process
    print(machine_line(args.threads, args.device), flush=True)
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: python -m bench.train_step {cmd}; batch {args.batch}, amp {args.amp}, "
          f"channels_last {args.channels_last}, heap_reuse {args.heap_reuse}, "
          f"warm-up {args.warmup}, timed steps <= {repeats} (stop after {args.max_seconds:.0f} s)",
          flush=True)
    results = []
    for arch in archs:
        for T in Ts:
            for variant in args.variants:
                case = Case(arch, T, variant, args.batch, args.threads, args.device, args.amp,
                            args.channels_last, args.warmup, repeats, args.max_seconds,
                            args.heap_reuse)
                r = run_case(case, args.timeout, in_process)
                results.append(r)
                print(table([r]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    if args.cosine:
        print("\nfast and approx vs exact gradient cosine similarity (preact_resnet20, "
              "base_width 8, T 5, batch 16, float64):")
        for row in gradient_cosine():
            print("  " + " ".join(f"{k}={v:.6f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in row.items()))
    for arch in archs:
        for key, what in (("cpu_s", "CPU-time"), ("step_s", "wall-clock")):
            line = ratios_line(results, arch, Ts, key)[len("RATIOS "):]
            print(f"{what} ratios for {arch}: {line}")
    print(f"ratios below are for {archs[-1]}")
    print(ratios_line(results, archs[-1], Ts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
