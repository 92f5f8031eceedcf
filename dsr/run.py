"""`python -m dsr.run`: train and evaluate one configuration, write one metrics.json.

    python -m dsr.run --method dsr-if --dataset digits --time-steps 4 --seed 0 \
        --out results/by-hand/dsr-if-T4/metrics.json

Defaults are the paper's per dataset and method; `--set key=value` overrides any harness or
method hyperparameter (unknown or repeated keys are errors). Errors print one line and exit 2,
before anything is trained where the input allows it (dsr.harness.preflight). The workflow writes
each run to a folder named by its hash (`.../seed0/<config_hash>/metrics.json`); a call whose --out
already holds this run does nothing, one that holds another run is refused, and one process at a
time holds a run's folder. SIGTERM or SIGUSR1 checkpoints the current step and exits 75; the
same command then resumes. A run whose loss becomes non-finite is recorded as diverged (exit 0).

ANN-to-SNN conversion never trains: `--save-model` keeps a trained ANN (the `ann` run's, or
`qcfs`'s quantised one, trained at --time-steps 1), and `--from-checkpoint` converts it and
evaluates the SNN for --time-steps T_max steps, recording every power-of-two prefix (and
--sweep-points) in metrics.json's latency_sweep:

    python -m dsr.run --method ann --dataset digits --time-steps 1 --seed 0 \
        --save-model results/by-hand/ann/model.pt --out results/by-hand/ann/metrics.json
    python -m dsr.run --method conversion --dataset digits --time-steps 64 --seed 0 \
        --from-checkpoint results/by-hand/ann/model.pt --sweep-points 2,4,8 \
        --out results/by-hand/conversion/metrics.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dsr import datasets, registry
from dsr.config import MODES, ConfigError, RunConfig, split_overrides
from dsr.harness.resolve import add_plugin_paths, plugin_targets, resolve

if TYPE_CHECKING:
    from dsr.method import Method

# exit status of a run stopped by SIGTERM/SIGUSR1 after checkpointing (EX_TEMPFAIL: try again)
PREEMPTED = 75


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (argparse's default adds the whole usage block)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see python -m dsr.run --help)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dsr.run", description=__doc__.split("\n")[0])
    p.add_argument("--method", required=True, help="method key, e.g. dsr-if, dsr-lif, sg-bptt")
    p.add_argument("--dataset", required=True,
                   help=f"{', '.join(datasets.DATASETS)} or a --dataset-plugin key")
    p.add_argument("--time-steps", type=positive_int, required=True, help="T (the paper's N)")
    p.add_argument("--seed", type=int, default=0, help="in [0, 2**32)")
    p.add_argument("--arch", help="architecture (default: the dataset's, e.g. preact_resnet18)")
    p.add_argument("--epochs", type=positive_int, help="default: the paper's for the dataset")
    p.add_argument("--mode", choices=MODES,
                   help="DSR gradient: fast (default; exact gradient, O(1) memory in T), exact "
                        "(autograd through T steps) or approx (drops BN's coupling term)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a harness or method hyperparameter (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="KEY=MODULE:CLASS",
                   help="register an out-of-tree method (repeatable)")
    p.add_argument("--dataset-plugin", action="append", default=[], metavar="KEY=MODULE:CLASS",
                   help="register an out-of-tree dataset (repeatable)")
    p.add_argument("--plugin-path", action="append", default=[], metavar="DIR",
                   help="a folder to import plug-in modules from (repeatable)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, type=Path, help="path of the metrics.json to write")
    p.add_argument("--save-model", type=Path, metavar="PATH",
                   help="also write the trained weights to PATH (model.pt), for conversion")
    p.add_argument("--from-checkpoint", type=Path, metavar="PATH",
                   help="conversion methods: convert this model.pt instead of training, and "
                        "evaluate a latency sweep up to --time-steps")
    p.add_argument("--sweep-points", type=time_list, default=[], metavar="T,T,...",
                   help="with --from-checkpoint: time steps recorded besides the powers of two")
    return p


def time_list(text: str) -> list[int]:
    return [positive_int(t) for t in text.split(",") if t.strip()]


def resolve_args(args: argparse.Namespace) -> tuple[RunConfig, type[Method]]:
    """Command-line arguments -> one frozen RunConfig and the method class it runs."""
    overrides = split_overrides(args.set)
    if args.device is not None:
        overrides["device"] = args.device
    return resolve(args.method, args.dataset, args.time_steps, args.seed, arch=args.arch,
                   epochs=args.epochs, mode=args.mode, overrides=overrides,
                   plugins=plugin_targets("--plugin", args.plugin),
                   dataset_plugins=plugin_targets("--dataset-plugin", args.dataset_plugin))


def check_out(out: Path) -> None:
    """Refuse an --out that cannot be written now, not after the whole training."""
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; pass the path of the metrics.json inside it")
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: expected the path of a .json file, e.g. .../metrics.json")
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {folder} is not a writable folder; choose another --out")


def check_stage(args: argparse.Namespace, cls: type[Method]) -> None:
    """Training and conversion are separate runs: refuse a run that mixes them."""
    converts = cls.source_method is not None
    if args.from_checkpoint is not None:
        if not converts:
            raise ConfigError(f"--from-checkpoint converts a trained ANN; {args.method} is not an "
                              "ANN-to-SNN conversion method (conversion, qcfs)")
        if args.save_model is not None:
            raise ConfigError("--save-model saves a trained model; a --from-checkpoint run "
                              "trains nothing, drop one of them")
        late = [t for t in args.sweep_points if t > args.time_steps]
        if late:
            raise ConfigError(f"--sweep-points {late[0]} is above --time-steps "
                              f"{args.time_steps}, the sweep's T_max; raise --time-steps")
        return
    if args.sweep_points:
        raise ConfigError("--sweep-points needs --from-checkpoint (a conversion run's sweep)")
    if converts and cls.source_method != args.method:
        raise ConfigError(f"{args.method} never trains: it converts the model.pt of the "
                          f"{cls.source_method!r} run; pass --from-checkpoint PATH (the "
                          "model.pt beside that run's metrics.json)")
    if converts and args.time_steps != 1:
        raise ConfigError(f"{args.method} trains its ANN with --time-steps 1 (T does not enter "
                          "its training); convert it at T with --from-checkpoint <its model.pt>")


def check_paths(args: argparse.Namespace, cfg: RunConfig) -> None:
    """--save-model must not overwrite --out or the run's checkpoint, and a results folder named
    by a run hash (the workflow's layout) must be this run's."""
    from dsr.harness.checkpoint import checkpoint_path

    if args.save_model is not None:
        model = args.save_model.resolve()
        for name, path in (("--out", args.out), ("the run's checkpoint",
                                                 checkpoint_path(args.out))):
            if model == path.resolve():
                raise ConfigError(f"--save-model {args.save_model} is {name}; save the model "
                                  "to its own file, e.g. model.pt beside metrics.json")
    folder = args.out.parent.name
    if re.fullmatch(r"[0-9a-f]{16}", folder) and folder != cfg.hash:
        raise ConfigError(f"--out {args.out}: its folder names run {folder}, but these arguments "
                          f"are run {cfg.hash}; write it to .../{cfg.hash}/{args.out.name}")


def already_done(args: argparse.Namespace, cfg: RunConfig, log) -> bool:
    """True when --out already holds this run (and --save-model its model): nothing to do. A
    corrupt --out is moved aside (it is retrained); one that holds another run is refused."""
    from dsr.harness.record import RunRecord
    from dsr.harness.results import ResultError, quarantine

    if not args.out.exists():
        return False
    try:
        rec = RunRecord.read(args.out)
    except ResultError as e:
        log(f"{e}: moved aside to {quarantine(args.out)}; training it again")
        return False
    if rec.config_hash != cfg.hash:
        raise ConfigError(f"--out {args.out} already holds another run (config_hash "
                          f"{rec.config_hash}, this one is {cfg.hash}); choose another "
                          "--out, a finished result is never overwritten")
    if args.save_model is not None and not args.save_model.exists():
        return False  # resumed from the last checkpoint to write the model
    log(f"{args.out} already holds this run ({cfg.hash}); nothing to do")
    return True


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from dsr.data import DataError
    from dsr.harness.checkpoint import CheckpointError, Preempted
    from dsr.harness.convert import convert, read_model
    from dsr.harness.results import ResultError
    from dsr.harness.train import TrainingError, run

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        add_plugin_paths(args.plugin_path)
        cfg, method_cls = resolve_args(args)
        check_out(args.out)
        check_stage(args, method_cls)
        state = None
        if args.from_checkpoint is not None:  # a conversion is identified by what it converts
            state = read_model(args.from_checkpoint, method_cls.source_method)
            cfg = dataclasses.replace(cfg, source=state["config_hash"])
        check_paths(args, cfg)
        if already_done(args, cfg, log):
            return 0
        if state is not None:
            convert(cfg, method_cls, args.out, args.from_checkpoint, args.sweep_points,
                    log=log, state=state)
        else:
            run(cfg, method_cls, args.out, log=log, save_model=args.save_model)
    except (ConfigError, registry.UnknownMethod, datasets.UnknownDataset, DataError, ResultError,
            TrainingError, CheckpointError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, always
        return 2
    except Preempted as e:  # a scheduler's stop signal: the current step is checkpointed
        print(f"preempted: {e}; the step is checkpointed, rerun the same command to resume",
              file=sys.stderr)
        return PREEMPTED
    except OSError as e:  # disk full, permissions, ...: checkpoints are atomic, so resuming works
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or ' '.join(str(e).split())}; free space or fix "
              "permissions, then rerun the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last epoch checkpoint is kept; rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
