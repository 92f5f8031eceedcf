"""What the training-step benchmark prints (`bench.train_step`): the machine line, the table
and the RATIOS line."""

from __future__ import annotations

import math
import os
import platform
import time


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
    peak and saved activations at the largest T over the smallest, and its saved activations
    over the online methods' (their largest per-step graph) at the largest T."""
    hi, lo = max(Ts), min(Ts)

    def ratio(a: str, b: str, k: str = key, tb: int = hi) -> float:
        return _get(results, arch, hi, a, k) / _get(results, arch, tb, b, k)

    return (f"RATIOS fast/exact@T{hi}={ratio('fast', 'exact'):.3f} "
            f"approx/exact@T{hi}={ratio('approx', 'exact'):.3f} "
            f"fast/sj-dsr@T{hi}={ratio('fast', 'sj-dsr'):.3f} "
            f"fast/sj-bptt@T{hi}={ratio('fast', 'sj-bptt'):.3f} "
            f"fast/sltt@T{hi}={ratio('fast', 'sltt'):.3f} "
            f"fast/ottt@T{hi}={ratio('fast', 'ottt'):.3f} "
            f"mem-fast@T{hi}/T{lo}={ratio('fast', 'fast', 'peak_bytes', lo):.3f} "
            f"fastsaved@T{hi}/T{lo}={ratio('fast', 'fast', 'saved_bytes', lo):.3f} "
            f"fastsaved/sltt@T{hi}={ratio('fast', 'sltt', 'saved_bytes'):.3f} "
            f"fastsaved/ottt@T{hi}={ratio('fast', 'ottt', 'saved_bytes'):.3f}")

