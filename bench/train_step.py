"""Training-step benchmark: DSR fast, exact and approx mode vs SpikingJelly's DSRIFNode, BPTT,
OTTT and SLTT.

    python -m bench.train_step [--quick] [--arch NAME ...] [--T 5 10 20] [--variants ...]
        [--threads N] [--device cpu|cuda] [--amp bf16] [--channels-last] [--heap-reuse]
        [--cosine] [--phases]

One step = forward + cross-entropy + backward + SGD (momentum) step at batch 32 on CIFAR-shaped
random input (3x32x32, 10 classes). Every variant builds the same `dsr.snn.models` architecture (the
first layer of a static image runs once for all of them; the DSR head) from a different neuron
factory:
  fast     our DSR-IF, `dsr.snn.layers.fast_forward`: T-step record pass (+ BN's coupling term)
           and a batch-B backward; exact mode's gradients
  exact    our DSR-IF, autograd through the T-step network (official DSR backward per neuron)
  approx   our DSR-IF, `fast_forward(coupling=False)`: drops BN's coupling term (not exact)
  sj-dsr   SpikingJelly 2.0's DSRIFNode (official-style: saves all T inputs per neuron)
  sj-bptt  SpikingJelly's multi-step LIFNode, ATan surrogate, backpropagation through time
  sltt     the `sltt` method's training step (`baselines.sltt`): T forward-backward passes at
           batch B, membrane detached between steps, BN per step
  ottt     the `ottt` method's (`baselines.ottt`): as sltt, with presynaptic traces
  sltt-k2  SLTT-K with K = 2 (opt-in: not in the default variants)
  infer    our DSR-IF forward alone under no_grad: the floor under fast's time and memory
Each configuration runs in a fresh spawned process (on CUDA in this one), in three parts:
a batch-2 step creates what persists (gradients, momentum, code pages, allocator state); the
first full step measures memory: `peak` is the growth of the peak RSS (glibc told to mmap every
block >= 128 KiB, so RSS follows live data; CUDA: max allocated) over the level before it, i.e.
what one step adds: saved activations, temporaries and gradients (zero_grad frees them before
each backward); then `step s` is the median wall time of n timed steps (glibc's default heap
again) and `cpu s` their median process CPU time (all threads; robust to other jobs).
`saved`: what autograd still keeps when backward starts (unique storages, parameters excluded;
for the online methods the largest of their T per-step graphs), O(T) for exact and BPTT, O(1)
for fast, approx, sltt and ottt. `--cosine` adds the fast/approx-vs-exact gradient cosine
similarity, `--phases` only prints where a fast step's time goes (`bench.step_analysis`). The
last line is `RATIOS fast/exact@T20=.. approx/exact@T20=.. fast/sj-dsr@T20=.. fast/sj-bptt@T20=..
fast/sltt@T20=.. fast/ottt@T20=.. mem-fast@T20/T5=.. fastsaved@T20/T5=.. fastsaved/sltt@T20=..
fastsaved/ottt@T20=..` for PreAct-ResNet-18 (the last architecture run; the line before it says
which).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import multiprocessing as mp
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict

from bench.step_analysis import fast_phases, gradient_cosine
from bench.step_memory import (
    MMAP_DEFAULT_MAX,
    SavedBytes,
    mallopt_heap_reuse,
    mallopt_mmap_threshold,
    peak_meter,
    snapshot_at_backward,
)
from bench.step_report import machine_line, ratios_line, table
from bench.step_variants import ARCHS, OPT_IN, VARIANTS, Case, build

# ---- the child: one configuration in a fresh process -------------------------------------------


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
    model, forward, online = build(case)
    step = _stepper(case, model, forward, online)
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


def _stepper(case: Case, model, forward: Callable, online: Callable | None = None) -> Callable:
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
        if online is not None:  # a forward and backward per time step
            opt.zero_grad(set_to_none=True)
            with amp(), _saving(hooks):
                online(x[:batch], y[:batch])
            opt.step()
            return
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


def _saving(hooks: SavedBytes | None) -> contextlib.AbstractContextManager:
    """Count what autograd saves, snapshotting at every backward (one per online step)."""
    import torch

    stack = contextlib.ExitStack()
    if hooks is not None:
        stack.enter_context(torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack))
        stack.enter_context(snapshot_at_backward(hooks))
    return stack


def _step_memory(case: Case, model, step: Callable) -> tuple[int, int]:
    """(peak, saved) bytes of the first full step, peak measured from the level before it."""
    peak_growth = peak_meter(case.device)
    saved = SavedBytes(model)
    step(hooks=saved)
    _sync(case)
    return peak_growth(), saved.total



def _step_times(case: Case, step: Callable) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of up to `case.repeats` timed steps after the warm-up:
    glibc's steady state (blocks < 32 MiB reused from the heap; bigger ones mmap'd and
    page-faulted afresh on every use), or with --heap-reuse every block from a heap that is
    never trimmed (no page faults after the first step)."""
    if not case.device.startswith("cuda"):
        mallopt_mmap_threshold(MMAP_DEFAULT_MAX)
        if case.heap_reuse:
            mallopt_heap_reuse()
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



# ---- the parent: plan, run, print ---------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.train_step",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: preact_resnet20 at T = 5 and 20, two timed steps")
    p.add_argument("--arch", nargs="+", choices=ARCHS, help=f"default: {' '.join(ARCHS)}")
    p.add_argument("--T", nargs="+", type=int, help="time steps (default 5 10 20)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS + OPT_IN, default=list(VARIANTS))
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
