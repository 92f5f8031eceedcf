"""Start-up of one training job: what a digits job spends before and after its epochs.

    python -m bench.startup [--repeats 3]

A default-grid job is one process (`python -m dsr.run`), so its fixed cost is paid about a
hundred times by `make reproduce`. Each pair below runs the two ways in fresh processes,
alternating, and prints the median wall time of each and their ratio (new/old < 1: faster):

  deterministic  torch.use_deterministic_algorithms (imports torch._inductor to set a compiler
                 flag) against dsr.harness.train.deterministic_algorithms (the same switch,
                 no import)
  digits         dsr.data.load("digits") building its split with scikit-learn (empty cache)
                 against reading the cached tensors (no scikit-learn import)
  job            one whole 1-epoch digits DSR-IF job at T = 2, cache empty against cache warm

The last line is `STARTUP deterministic=<r> digits=<r> job=<r>`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dsr import REPO_ROOT

PREFIX = "import torch\n"
OLD_DET = PREFIX + "torch.use_deterministic_algorithms(True, warn_only=True)\n"
NEW_DET = (PREFIX + "from dsr.harness.train import deterministic_algorithms\n"
           "deterministic_algorithms()\n")
LOAD = "import dsr.data\ndsr.data.load('digits', cache_dir={cache!r})\n"
JOB = ["-m", "dsr.run", "--method", "dsr-if", "--dataset", "digits", "--arch", "preact_resnet8",
       "--time-steps", "2", "--seed", "0", "--epochs", "1"]


def wall(args: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO_ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def pair(name: str, old, new, repeats: int) -> float:
    """Median wall seconds of `old()` and `new()` (alternating), printed; returns new/old."""
    olds, news = [], []
    for _ in range(repeats):
        olds.append(old())
        news.append(new())
    o, n = statistics.median(olds), statistics.median(news)
    print(f"{name:14s} old {o:6.2f} s  new {n:6.2f} s  new/old {n / o:.3f}")
    return n / o


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    repeats = ap.parse_args().repeats
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        warm = str(Path(tmp, "warm"))
        wall(["-c", LOAD.format(cache=warm)])  # fill the warm cache once

        def cold_cache() -> str:
            return tempfile.mkdtemp(dir=tmp)

        det = pair("deterministic", lambda: wall(["-c", OLD_DET]),
                   lambda: wall(["-c", NEW_DET]), repeats)
        digits = pair("digits", lambda: wall(["-c", LOAD.format(cache=cold_cache())]),
                      lambda: wall(["-c", LOAD.format(cache=warm)]), repeats)

        def job(cache: str) -> float:
            out = Path(tempfile.mkdtemp(dir=tmp), "metrics.json")
            return wall([*JOB, "--out", str(out)], env={**env, "DSR_CACHE_DIR": cache})

        whole = pair("job", lambda: job(cold_cache()), lambda: job(warm), repeats)
    print(f"STARTUP deterministic={det:.3f} digits={digits:.3f} job={whole:.3f}")


if __name__ == "__main__":
    main()
