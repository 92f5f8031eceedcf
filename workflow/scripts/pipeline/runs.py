"""The results folder as a whole: cached results that cannot be used (`unusable`, which the
workflow moves aside whenever it plans), runs no configuration asks for (prune) and runs written
in the layout before run identity (migrate). prune and migrate only list what they would do
unless told to act.

    python -m pipeline.runs prune [CONFIG ...] [--delete]
    python -m pipeline.runs migrate RESULTS_DIR [--apply]

(`make prune`, `make migrate`; the package is installed in .venv).
`prune` reads every configuration given (default: config/*.yaml), plans each grid as the
workflow does, and lists the run folders under their results folders that none of them
references; `--delete` removes them. `migrate` moves runs/{dataset}/{arch}/{method}/{T or L}/
[{param}={value}/]seed{seed}/ folders into runs/.../T{T}/seed{seed}/{config_hash}/, the hash
computed from each metrics.json's recorded config (a conversion's identity adds the hash of the
model it converted, recorded in its converted_from, and its metrics.json is rewritten with it).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import sys
from pathlib import Path

from dsr import REPO_ROOT
from dsr.config import ConfigError, RunConfig
from dsr.harness.record import RunRecord
from dsr.harness.results import ResultError
from pipeline.configs import load_config
from pipeline.grid import Grid, check_config


def unusable(grid: Grid) -> list[tuple[Path, str]]:
    """Cached metrics.json files of the grid that cannot be used, with why: unreadable,
    not of the schema, non-finite, or holding another run than their folder names."""
    bad = []
    for key, run in grid.runs.items():
        path = Path(grid.results, key, "metrics.json")
        if not path.exists():
            continue
        try:
            recorded = RunRecord.read(path).config_hash
        except ResultError as e:
            bad.append((path, str(e).removeprefix(f"{path}: ").split(";")[0]))
            continue
        if recorded != run.hash:
            bad.append((path, f"it holds run {recorded}, its folder names run {run.hash}"))
    return bad


def identity_folder(folder: Path) -> bool:
    """Is `folder` a run folder of the identity layout (.../seed{seed}/{config_hash})?"""
    return (re.fullmatch(r"[0-9a-f]{16}", folder.name) is not None
            and re.fullmatch(r"seed\d+", folder.parent.name) is not None)


def run_folders(results: Path) -> list[Path]:
    """Every run folder of the identity layout under results/runs."""
    return sorted(p.parent for p in (results / "runs").glob("*/*/*/*/*/*/metrics.json")
                  if identity_folder(p.parent))


def unreferenced(configs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(run folders no configuration references, folders in the layout before run identity),
    under the results folders of `configs`."""
    referenced: set[Path] = set()
    results: set[Path] = set()
    for path in configs:
        grid = Grid(check_config(load_config([path], {}, REPO_ROOT), REPO_ROOT))
        results.add(Path(grid.results).resolve())
        referenced |= {Path(grid.results, key).resolve() for key in grid.runs}
    stray, old = [], []
    for root in sorted(results):
        stray += [f for f in run_folders(root) if f.resolve() not in referenced]
        old += sorted(p.parent for p in (root / "runs").rglob("metrics.json")
                      if not identity_folder(p.parent))
    return stray, old


def new_folder(results: Path, rec: RunRecord) -> tuple[Path, RunRecord]:
    """Where a run recorded in the layout before run identity belongs, and its record with the
    conversion's `source` added (unchanged for a training run)."""
    config = dict(rec.config)
    converted = rec.converted_from
    if converted is not None:
        config["source"] = converted.config_hash
    cfg = RunConfig.from_dict(config)
    folder = (results / "runs" / cfg.dataset / cfg.arch / cfg.method / f"T{cfg.time_steps}"
              / f"seed{cfg.seed}" / cfg.hash)
    if converted is None:
        if cfg.hash != rec.config_hash:
            raise ResultError(f"its recorded config_hash {rec.config_hash} is not the hash "
                              f"of its recorded config ({cfg.hash})")
        return folder, rec
    return folder, dataclasses.replace(rec, config=cfg.to_dict(), config_hash=cfg.hash)


def move_records(results: Path, old: Path, new: Path, log=print) -> None:
    """A moved run's job log and timing record follow it (logs/{train,convert}/<run>.log,
    benchmarks/{train,convert}/<run>.tsv)."""
    runs = results / "runs"
    for folder, suffix in (("logs", ".log"), ("benchmarks", ".tsv")):
        for kind in ("train", "convert"):
            base = results / folder / kind
            src = base / f"{old.relative_to(runs)}{suffix}"
            if src.exists():
                dst = base / f"{new.relative_to(runs)}{suffix}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
                log(f"moved {src} -> {dst}")


def migrate(results: Path, apply: bool, log=print) -> int:
    """Move every old-layout run under `results` to its identity folder; the number moved (or
    that would be). A conversion's converted_from.path follows its model's move."""
    moves: dict[Path, tuple[Path, RunRecord]] = {}
    for path in sorted((results / "runs").rglob("metrics.json")):
        if identity_folder(path.parent):
            continue
        try:
            moves[path.parent] = new_folder(results, RunRecord.read(path))
        except (ResultError, ConfigError, TypeError, KeyError) as e:
            log(f"skipped {path}: {e}")
    renamed = {str(old / "model.pt"): str(new / "model.pt") for old, (new, _) in moves.items()}
    for old, (new, rec) in moves.items():
        if new.exists():
            log(f"skipped {old}: {new} already exists")
            continue
        log(f"{'moved' if apply else 'would move'} {old} -> {new}")
        if not apply:
            continue
        staged = old.with_name(f".{old.name}.migrating")  # `new` may lie inside `old`
        old.rename(staged)
        new.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(new)
        move_records(results, old, new, log)
        converted = rec.converted_from
        if converted is not None:
            path = renamed.get(converted.path, converted.path)
            rec = dataclasses.replace(rec, converted_from=dataclasses.replace(converted,
                                                                              path=path))
        if rec != RunRecord.read(new / "metrics.json"):
            rec.write(new / "metrics.json")
    return len(moves)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.runs", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prune", help="list (--delete: remove) runs no configuration references")
    pr.add_argument("configs", nargs="*", type=Path)
    pr.add_argument("--delete", action="store_true")
    mg = sub.add_parser("migrate", help="list (--apply: move) runs of the old layout")
    mg.add_argument("results", type=Path)
    mg.add_argument("--apply", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.command == "migrate":
            n = migrate(args.results, args.apply)
            print(f"{n} run(s) {'moved' if args.apply else 'to move; add --apply to move them'}")
            return 0
        configs = args.configs or sorted((REPO_ROOT / "config").glob("*.yaml"))
        stray, old = unreferenced(configs)
    except (ConfigError, ResultError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for folder in stray:
        print(f"{'removed' if args.delete else 'unreferenced'} {folder}")
        if args.delete:
            shutil.rmtree(folder)
    for folder in old:
        print(f"old layout (python -m pipeline.runs migrate): {folder}")
    names = ", ".join(str(c) for c in configs)
    print(f"{len(stray)} run folder(s) referenced by none of {names}"
          + ("" if args.delete or not stray else "; add --delete to remove them"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
