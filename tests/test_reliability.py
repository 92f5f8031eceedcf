"""Reliability of one run: resume after SIGKILL, a catalogue of bad inputs (each a one-line error,
a non-zero exit, no partial output, every existing result and cache untouched), non-finite losses,
atomic writes, and checkpoints that never execute code.

Killed runs are real `python -m dsr.run` processes; the CLI catalogue calls `dsr.run.main`
in-process (same code, a second each instead of a fresh interpreter), with the repository root
of the data layer pointed at a temporary folder so that its default data and cache folders are
fixtures. `paused_main` is the fault injector: it runs the CLI and stops at a named point so the
test can SIGKILL the process exactly there.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_data import write_aedat, write_cifar_folder
from torch import Tensor

from dsr import REPO_ROOT as REPO
from dsr import data as dsr_data
from dsr import run as cli
from dsr.config import ConfigError, TrainConfig
from dsr.data import DataInfo, Dataset
from dsr.harness import results
from dsr.harness.results import ResultError, atomic_write, read_metrics, remove_stale_temps
from dsr.method import DSRIF, DSRIFParams

HERE = __name__  # plug-ins below are registered as f"{HERE}:Class"

# ---- plug-in methods used as test doubles ------------------------------------------------------


@dataclass(frozen=True)
class FaultyParams(DSRIFParams):
    fault: str = "none"  # none | loss (NaN loss) | grad (finite loss, NaN gradients)
    fault_step: int = 0  # 1-based optimiser step of this process at which the fault happens


class Faulty(DSRIF):
    """DSR-IF whose loss turns NaN, or whose gradients do, at one training step."""

    key, Params = "faulty", FaultyParams
    steps = 0

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        self.steps += 1
        loss = super().loss(outputs, y)
        if self.steps != self.p.fault_step:
            return loss
        if self.p.fault == "loss":
            return loss * float("nan")
        # d sqrt(u)/du = inf at u = 0, times 0 upstream: NaN gradients under a finite loss
        return loss + 0 * (outputs * 0).sum().sqrt()


class ExactOnly(DSRIF):
    """A method with only the exact gradient, as the surrogate-gradient baselines."""

    key, modes, category = "exact-only", ("exact",), "surrogate gradient"


class WrongKey(DSRIF):
    key = "something-else"


def tiny_dataset(name: str, y_train: Tensor, y_test: Tensor, num_classes: int = 10) -> Dataset:
    """An in-memory 8x8 dataset with these labels (images of zeros)."""
    info = DataInfo(name=name, num_classes=num_classes, in_channels=1, image_size=8,
                    sequence=False, frames=None, split=None, train_size=len(y_train),
                    test_size=len(y_test), source="test", preprocessing="none")
    x = lambda y: torch.zeros(len(y), 1, 8, 8, dtype=torch.uint8)  # noqa: E731
    return Dataset(info, {"train": (x(y_train), y_train), "test": (x(y_test), y_test)},
                   scale=1.0, mean=(0.0,), std=(1.0,), pad=0, flip=False)


class BadLabels:
    """A dataset plug-in whose labels run past its num_classes (an off-by-one in a loader)."""

    key, defaults = "badlabels", {"arch": "preact_resnet8", "epochs": 1}

    def load(self, root, options) -> Dataset:
        return tiny_dataset("badlabels", torch.arange(40) % 11, torch.arange(20) % 10)


class EmptyTest:
    """A dataset plug-in whose test split is empty (a wrong glob in a loader)."""

    key, defaults = "emptytest", {"arch": "preact_resnet8", "epochs": 1}

    def load(self, root, options) -> Dataset:
        return tiny_dataset("emptytest", torch.arange(40) % 10, torch.zeros(0, dtype=torch.long))


# ---- helpers -----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: content hash and mtime (folders: mtime, which changes
    when anything is created in them, even a temporary file removed again)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, st.st_mtime_ns)
    return out


def assert_one_line_error(code: int | str | None, err: str, *fragments: str) -> None:
    assert code not in (0, None), f"exit status {code!r} for an error"
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def call_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int | str | None, str]:
    """dsr.run.main as the shell would see it: (exit status, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse errors exit from inside main
        code = e.code
    return code, capsys.readouterr().err


# dsr.harness.train.run switches deterministic algorithms on; keep other test files unaffected
pytestmark = pytest.mark.usefixtures("restore_determinism_flags")


TINY = ["--dataset", "digits", "--time-steps", "2", "--device", "cpu", "--set", "base_width=2",
        "--set", "train_subset=20", "--set", "latency_batches=1"]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run of seed 9 (metrics.json + checkpoint.pt), written by the CLI."""
    out = tmp_path_factory.mktemp("done") / "metrics.json"
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        code = cli.main(["--method", "dsr-if", *TINY, "--epochs", "1", "--seed", "9",
                         "--out", str(out)])
    finally:
        torch.use_deterministic_algorithms(enabled)
    assert code == 0 and out.is_file() and (out.parent / "checkpoint.pt").is_file()
    return out


@dataclass
class World:
    """A results tree with a finished run, a data cache, and the run folder under test."""

    root: Path  # everything below is under root, and must be unchanged after an error
    repo: Path  # the data layer's repository root: data/<name>, .cache/data
    out: Path  # --out of the run under test (does not exist)
    done: Path  # metrics.json of a finished run
    cache: Path  # an existing data cache file

    def args(self, *extra: str, method: str = "dsr-if", drop: tuple[str, ...] = ()) -> list[str]:
        opts = {"--method": method, "--epochs": "1", "--out": str(self.out)}
        argv = [a for k, v in opts.items() if k not in drop for a in (k, v)]
        fill = {"root": self.root, "out": self.out, "done": self.done, "here": HERE,
                "checkpoint": self.out.parent / "checkpoint.pt"}
        extra = [x.format(**fill) for x in extra]
        # a case's own --set key=... replaces TINY's (a key given twice is an error of its own)
        mine = {v.partition("=")[0] for k, v in zip(extra, extra[1:], strict=False)
                if k == "--set"}
        tiny = [a for pair in zip(TINY[::2], TINY[1::2], strict=True)
                if not (pair[0] == "--set" and pair[1].partition("=")[0] in mine) for a in pair]
        return argv + tiny + extra


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, done_run: Path) -> World:
    repo = tmp_path / "repo"
    monkeypatch.setattr(dsr_data.core, "REPO_ROOT", repo)
    cache = repo / ".cache" / "data" / "cifar10-0123456789abcdef.pt"
    cache.parent.mkdir(parents=True)
    torch.save({"key": "{}", "train_x": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)}, cache)
    # the digits split's tensor cache, as on any machine that ran digits before (a first run
    # writes it, atomically, even if it then refuses its arguments: a cache, not a result)
    dsr_data.load("digits")
    done = tmp_path / "results" / "runs" / "digits" / "preact_resnet8" / "dsr-if" / "T2" / "seed9"
    done.mkdir(parents=True)
    for name in ("metrics.json", "checkpoint.pt"):
        shutil.copy(done_run.parent / name, done / name)
    out = tmp_path / "results" / "runs" / "digits" / "preact_resnet8" / "dsr-if" / "T2" / "seed0"
    return World(tmp_path, repo, out / "metrics.json", done / "metrics.json", cache)


# ---- 1. bad inputs at the command line ---------------------------------------------------------

# (id, extra arguments, fragments the one line must hold: what is wrong, then how to fix it)
CONFIG_CASES = [
    ("unknown-method", ["--method", "dsr-fly"], ["unknown method 'dsr-fly'", "choose one of"]),
    ("unknown-dataset", ["--dataset", "mnist"], ["unknown dataset 'mnist'", "choose one of"]),
    ("unknown-arch", ["--arch", "resnet9000"], ["unknown architecture 'resnet9000'", "choose one"]),
    ("unknown-mode", ["--mode", "slow"], ["--mode: invalid choice: 'slow'", "choose from"]),
    ("T-zero", ["--time-steps", "0"], ["--time-steps", "must be >= 1, got 0"]),
    ("T-negative", ["--time-steps", "-4"], ["--time-steps", "must be >= 1, got -4"]),
    ("T-fraction", ["--time-steps", "2.5"], ["--time-steps", "expected a positive integer"]),
    ("T-text", ["--time-steps", "four"], ["--time-steps", "expected a positive integer"]),
    ("epochs-zero", ["--epochs", "0"], ["--epochs", "must be >= 1"]),
    ("seed-text", ["--seed", "zero"], ["--seed", "invalid int value: 'zero'"]),
    ("lr-negative", ["--set", "lr=-0.1"], ["lr must be a positive finite number, got -0.1"]),
    ("lr-text", ["--set", "lr=fast"], ["--set lr=fast", "expected a number"]),
    ("lr-infinite", ["--set", "lr=inf"], ["--set lr=inf: expected a finite number"]),
    ("lr-nan", ["--set", "lr=nan"], ["--set lr=nan: expected a finite number"]),
    ("v_th-infinite", ["--set", "v_th=inf"], ["--set v_th=inf: expected a finite number"]),
    ("v_th-nan", ["--set", "v_th=NaN"], ["--set v_th=NaN: expected a finite number"]),
    ("momentum-minus-inf", ["--set", "momentum=-inf"], ["--set momentum=-inf: expected a finite"]),
    ("pj-per-ac-negative", ["--set", "pj_per_ac=-1"], ["pj_per_ac must be a finite energy >= 0"]),
    ("pj-per-mac-negative", ["--set", "pj_per_mac=-0.5"], ["pj_per_mac must be a finite energy"]),
    ("unknown-key", ["--set", "learning_rate=0.1"], ["unknown key(s) learning_rate", "valid keys"]),
    ("set-without-equals", ["--set", "lr"], ["--set expects key=value, got 'lr'"]),
    ("set-empty-key", ["--set", "=0.1"], ["--set expects key=value, got '=0.1'"]),
    ("bad-optimizer", ["--set", "optimizer=rmsprop"], ["optimizer must be 'sgd' or 'adam'"]),
    ("dvs-setting-on-digits", ["--set", "dvs_split=last900"],
     ["unknown key(s) dvs_split for --set (dsr-if on digits)"]),
    ("bad-dropout", ["--set", "dropout=1.5"], ["dropout must be in [0, 1), got 1.5"]),
    ("momentum-one", ["--set", "momentum=1"], ["momentum must be in [0, 1), got 1.0"]),
    ("batch-size-zero", ["--set", "batch_size=0"], ["batch_size must be >= 1, got 0"]),
    ("int-as-fraction", ["--set", "warmup_iters=2.5"], ["warmup_iters=2.5", "an integer"]),
    ("warmup-negative", ["--set", "warmup_iters=-5"], ["warmup_iters must be >= 0, got -5"]),
    ("width-zero", ["--set", "base_width=0"], ["base_width must be >= 1, got 0"]),
    ("latency-zero", ["--set", "latency_batches=0"], ["latency_batches must be >= 1"]),
    ("bool-garbage", ["--set", "download=maybe"], ["--set download=maybe", "true or false"]),
    ("bad-stem", ["--set", "stem=vgg"], ["stem must be 'cifar' or 'imagenet', got 'vgg'"]),
    ("bad-device", ["--device", "tpu"], ["device must be auto, cpu, cuda or cuda:N, got 'tpu'"]),
    ("method-param-range", ["--set", "ann_pretrain_epochs=-1"], ["ann_pretrain_epochs must be"]),
    ("method-param-text", ["--set", "v_th=high"], ["--set v_th=high", "expected a number"]),
    ("subset-too-small", ["--set", "train_subset=5"], ["train_subset=5", "set train_subset"]),
    ("plugin-no-colon", ["--plugin", "mine=dsr.method.DSRIF", "--method", "mine"],
     ["--plugin mine=dsr.method.DSRIF", "expected KEY=module:Class"]),
    ("plugin-unimportable", ["--plugin", "mine=no_such_pkg.methods:Mine", "--method", "mine"],
     ["'no_such_pkg.methods:Mine', which does not import", "check the module path"]),
    ("plugin-no-class", ["--plugin", "mine=dsr.method:NoSuchMethod", "--method", "mine"],
     ["'dsr.method:NoSuchMethod', which does not import", "check the module path"]),
    ("plugin-not-a-method", ["--plugin", "evil=os:system", "--method", "evil"],
     ["'os:system', which is not a subclass of dsr.method.Method", "point it at a method class"]),
    ("plugin-not-a-class", ["--plugin", "mine=dsr.method:HYBRID_PERCENTILE", "--method", "mine"],
     ["which is not a subclass of dsr.method.Method"]),
    ("plugin-key-differs", ["--plugin", "mine={here}:WrongKey", "--method", "mine"],
     ["declares key 'something-else' but is registered as 'mine'", "use one name"]),
    ("fast-mode-not-dsr", ["--plugin", "exact-only={here}:ExactOnly", "--method", "exact-only",
                           "--mode", "fast"], ["--mode fast is not available for exact-only"]),
    ("out-not-json", ["--out", "{root}/results/run"], ["expected the path of a .json file"]),
    ("out-is-folder", ["--out", "{root}/results"], ["is a folder", "metrics.json inside it"]),
    ("out-under-a-file", ["--out", "{done}/metrics.json"], ["is not a writable folder"]),
    # checked before the first step: what would fail at it, after it, or take the machine down
    ("arch-too-small-input", ["--arch", "vgg11"],
     ["architecture vgg11 does not take the 8x8 input of digits", "choose an architecture"]),
    ("T-beyond-memory", ["--time-steps", "10000000"],
     ["T=10000000 x batch 64 needs at least", "GB for one layer's activations", "is available",
      "lower T or the batch size"]),
    ("seed-too-large", ["--seed", str(2**64)], ["seed must be in [0, 2**32), got 18446744073"]),
    ("seed-negative", ["--seed", "-1"], ["seed must be in [0, 2**32), got -1"]),
    ("set-twice", ["--set", "lr=0.1", "--set", "lr=0.2"],
     ["--set lr is given twice (lr=0.1 and lr=0.2); give it once"]),
    ("save-model-is-out", ["--save-model", "{out}"], ["is --out", "save the model to its own"]),
    ("save-model-is-checkpoint", ["--save-model", "{checkpoint}"],
     ["is the run's checkpoint", "save the model to its own"]),
    ("out-names-another-run", ["--out", "{root}/results/r/seed0/0123456789abcdef/metrics.json"],
     ["its folder names run 0123456789abcdef, but these arguments are run"]),
    ("dataset-labels-out-of-range", ["--dataset", "badlabels",
                                     "--dataset-plugin", "badlabels={here}:BadLabels"],
     ["badlabels: train labels span 0..10, outside 0..9 (num_classes=10)", "fix the labels"]),
    ("dataset-empty-split", ["--dataset", "emptytest",
                             "--dataset-plugin", "emptytest={here}:EmptyTest"],
     ["emptytest: the test split is empty", "both splits"]),
    ("plugin-path-missing", ["--plugin-path", "{root}/nowhere"],
     ["plug-in path", "nowhere is not a folder"]),
]


@pytest.mark.parametrize("extra, fragments", [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_one_line_and_touches_nothing(world: World, capsys, extra, fragments):
    before = snapshot(world.root)
    code, err = call_cli(world.args(*extra), capsys)
    assert_one_line_error(code, err, *fragments)
    assert snapshot(world.root) == before  # no metrics, no checkpoint, no folder, no temp file


@pytest.mark.parametrize("field", ["pj_per_ac", "pj_per_mac"])
@pytest.mark.parametrize("value", [-1.0, math.inf, math.nan])
def test_energy_constants_are_refused_when_the_config_is_built(field: str, value: float):
    # not in the SynOps pass after the last epoch: a long run would be lost at its end
    with pytest.raises(ConfigError, match=f"{field} must be a finite energy >= 0"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("missing", ["--method", "--out"])
def test_missing_required_argument(world: World, capsys, missing: str):
    before = snapshot(world.root)
    code, err = call_cli(world.args(drop=(missing,)), capsys)
    assert_one_line_error(code, err, f"the following arguments are required: {missing}",
                          "--help")
    assert snapshot(world.root) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(world: World, capsys):
    before = snapshot(world.root)
    code, err = call_cli(world.args("--device", "cuda:0"), capsys)
    assert_one_line_error(code, err, "CUDA is not available", "use --device cpu")
    assert snapshot(world.root) == before


def test_real_process_prints_one_line_and_exits_2(tmp_path: Path):
    """The catalogue above runs in-process; one real interpreter confirms the exit status and
    that nothing but the one line reaches stderr (no warnings, no traceback)."""
    out = tmp_path / "run" / "metrics.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dsr.run", "--method", "dsr-if", *TINY, "--set", "lr=-1",
         "--out", str(out)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_line_error(proc.returncode, proc.stderr, "lr must be a positive finite number")
    assert list(tmp_path.iterdir()) == []


# ---- 2. bad data -------------------------------------------------------------------------------


def cifar_cli(world: World, root: Path | None) -> list[str]:
    extra = ["--dataset", "cifar10", "--set", "train_subset=none"]
    return world.args(*extra, *(["--set", f"data_root={root}"] if root else []))


def test_cifar_missing_root(world: World, capsys):
    before = snapshot(world.root)
    code, err = call_cli(cifar_cli(world, world.root / "nowhere"), capsys)
    assert_one_line_error(code, err, f"no data at {world.root / 'nowhere'}",
                          "--set download=true or set data_root")
    assert snapshot(world.root) == before


def test_cifar_default_root_missing(world: World, capsys):
    before = snapshot(world.root)
    code, err = call_cli(cifar_cli(world, None), capsys)
    assert_one_line_error(code, err, f"no data at {world.repo / 'data' / 'cifar10'}", "data_root")
    assert snapshot(world.root) == before


@pytest.mark.parametrize("layout", ["flat-images", "class-count", "empty-class"])
def test_cifar_wrong_layout(world: World, capsys, layout: str):
    root = world.root / "data" / layout
    if layout == "flat-images":  # images straight in the folder: neither known layout
        write_cifar_folder(root / "tmp", {"train": 1})
        for f in (root / "tmp").rglob("*.jpg"):
            f.rename(root / f"{f.parent.name}-{f.name}")
        shutil.rmtree(root / "tmp")
        fragments = ["expected", "cifar-10-batches-py", "train/<class>"]
    else:
        write_cifar_folder(root, {"train": 1, "test": 1})
        if layout == "class-count":
            shutil.rmtree(root / "test" / "truck")
            fragments = ["must hold the same 10 class folders", "found 10 and 9"]
        else:
            for f in (root / "train" / "cat").iterdir():
                f.unlink()
            fragments = [f"class folder {root / 'train' / 'cat'} holds no", "restore its files"]
    before = snapshot(world.root)
    code, err = call_cli(cifar_cli(world, root), capsys)
    assert_one_line_error(code, err, *fragments)
    assert snapshot(world.root) == before


def test_cifar_corrupt_image(world: World, capsys):
    root = write_cifar_folder(world.root / "data" / "cifar", {"train": 1, "test": 1})
    bad = root / "train" / "dog" / "0000.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    before = snapshot(world.root)
    code, err = call_cli(cifar_cli(world, root), capsys)
    assert_one_line_error(code, err, f"cannot decode image {bad}", "delete the file")
    assert snapshot(world.root) == before  # no cache written from a partial decode


def test_cifar_truncated_cache(world: World, capsys):
    root = write_cifar_folder(world.root / "data" / "cifar", {"train": 1, "test": 1})
    made = set(world.cache.parent.iterdir())
    dsr_data.load("cifar10", root)  # builds the cache in the (fixture) default cache folder
    (cache,) = set(world.cache.parent.iterdir()) - made
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    before = snapshot(world.root)
    code, err = call_cli(cifar_cli(world, root), capsys)
    assert_one_line_error(code, err, f"cache file {cache} is corrupt or truncated", "delete it")
    assert snapshot(world.root) == before  # the broken cache is reported, not replaced


@pytest.mark.parametrize("damage", ["odd-word-count", "garbage"])
def test_dvs_corrupt_event_file(world: World, capsys, damage: str):
    folder = world.root / "data" / "dvs" / "extract" / "airplane"
    folder.mkdir(parents=True)
    write_aedat(folder / "cifar10_airplane_0.aedat", 8, 20)
    bad = folder / "cifar10_airplane_1.aedat"
    raw = b"#!AER-DAT2.0\r\n" + (b"\0\0\0\1" * 3 if damage == "odd-word-count" else b"\xff" * 7)
    bad.write_bytes(raw)
    before = snapshot(world.root)
    code, err = call_cli(world.args("--dataset", "cifar10_dvs", "--set", "train_subset=none",
                                    "--set", f"data_root={folder.parent.parent}"), capsys)
    assert_one_line_error(code, err, f"cannot read event file {bad}", "re-extract it")
    assert snapshot(world.root) == before


def test_dvs_no_event_files(world: World, capsys):
    empty = world.root / "data" / "dvs-empty"
    empty.mkdir(parents=True)
    before = snapshot(world.root)
    code, err = call_cli(world.args("--dataset", "cifar10_dvs", "--set", f"data_root={empty}"),
                         capsys)
    assert_one_line_error(code, err, f"no event files at {empty}", "set data_root")
    assert snapshot(world.root) == before


# ---- 3. bad checkpoints ------------------------------------------------------------------------


class Payload:
    """Unpickling this calls shutil.copyfile(src, dst): code a checkpoint must never run."""

    def __init__(self, src: Path, dst: Path):
        self.src, self.dst = str(src), str(dst)

    def __reduce__(self):
        return shutil.copyfile, (self.src, self.dst)


def write_checkpoint(world: World, kind: str) -> tuple[list[str], str]:
    """Put a bad checkpoint.pt where the run under test looks; its CLI fragments."""
    ckpt = world.out.parent / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    good = world.done.parent / "checkpoint.pt"  # a real one, of the --seed 9 configuration
    if kind == "truncated":
        ckpt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return ["unreadable checkpoint", "delete it to restart"], ""
    if kind == "empty":
        ckpt.write_bytes(b"")
        return ["unreadable checkpoint", "delete it to restart"], ""
    if kind == "other-config":
        shutil.copy(good, ckpt)
        return ["checkpoint of another run", "rerun with the arguments"], ""
    if kind == "not-a-dict":
        torch.save([1, 2, 3], ckpt)
        return ["not a checkpoint of this trainer", "delete it"], ""
    if kind == "missing-keys":
        torch.save({"config_hash": "0" * 16, "epoch": 1}, ckpt)
        return ["not a checkpoint of this trainer", "delete it"], ""
    state = torch.load(good, weights_only=True)
    if kind == "wrong-shapes":  # this configuration's hash, another model's weights
        args = cli.parser().parse_args(world.args())
        state["config_hash"] = cli.resolve_args(args)[0].hash
        state["model"] = {k: torch.zeros(3, 1, 7) for k in state["model"]}
        torch.save(state, ckpt)
        return ["does not fit this model", "delete it to restart"], ""
    marker = world.root / "executed"
    if kind == "pickle-payload":  # a plain pickle stream
        ckpt.write_bytes(pickle.dumps(Payload(good, marker), protocol=2))
    else:  # "torch-payload": inside torch.save's zip container
        torch.save({"config_hash": "x", "model": Payload(good, marker)}, ckpt)
    return ["unreadable checkpoint (UnpicklingError)", "delete it"], str(marker)


@pytest.mark.parametrize("kind", ["truncated", "empty", "other-config", "not-a-dict",
                                  "missing-keys", "wrong-shapes", "pickle-payload",
                                  "torch-payload"])
def test_bad_checkpoint_is_refused(world: World, capsys, kind: str):
    fragments, marker = write_checkpoint(world, kind)
    before = snapshot(world.root)
    code, err = call_cli(world.args(), capsys)
    assert_one_line_error(code, err, str(world.out.parent / "checkpoint.pt"), *fragments)
    assert snapshot(world.root) == before  # the checkpoint is reported, never replaced
    if marker:
        assert not Path(marker).exists(), "weights_only=True must refuse the payload"


def test_payload_would_run_without_weights_only(tmp_path: Path):
    """The payload is live: a plain unpickler runs it (so the refusal above means something)."""
    src, marker = tmp_path / "src", tmp_path / "executed"
    src.write_text("x")
    pickle.loads(pickle.dumps(Payload(src, marker)))
    assert marker.read_text() == "x"


def test_no_config_value_is_evaluated_as_code():
    """No eval/exec/pickle in the package; every torch.load is weights_only=True."""
    banned = ("eval(", "exec(", "pickle.load", "yaml.load(", "shell=True", "os.system")
    for path in [*REPO.glob("dsr/**/*.py"), *REPO.glob("baselines/**/*.py")]:
        text = path.read_text()
        for word in banned:
            hits = [ln for ln in text.splitlines() if word in ln and ".eval()" not in ln]
            assert not hits, f"{path.name}: {hits}"
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path.name}: {line.strip()}"


# ---- 4. non-finite losses ----------------------------------------------------------------------

FAULTY = ["--plugin", f"faulty={HERE}:Faulty", "--epochs", "3", "--set", "train_subset=40",
          "--set", "batch_size=20"]  # 2 steps per epoch


@pytest.mark.parametrize("fault, step, message", [
    ("loss", 3, "non-finite loss (nan) at step 1"),  # first step of epoch 2
    ("grad", 4, "non-finite weights after the epoch"),  # last step of epoch 2: finite loss
])
def test_non_finite_is_recorded_as_diverged_and_keeps_last_good_checkpoint(
        world: World, capsys, fault, step, message):
    """A run that diverges is a result: metrics.json says so (epoch, why), keeps the epochs
    before it, holds no NaN, and the last good checkpoint stays; the tables show it."""
    argv = world.args(*FAULTY, "--set", f"fault={fault}", "--set", f"fault_step={step}",
                      method="faulty")
    code, err = call_cli(argv, capsys)
    assert code == 0 and f"diverged in epoch 2: {message}; recorded as diverged" in err
    assert sorted(p.name for p in world.out.parent.iterdir()) == ["checkpoint.pt", "metrics.json"]
    metrics = read_metrics(world.out)  # finite throughout (read_metrics refuses NaN)
    assert metrics["diverged"] == {"epoch": 2, "reason": message}
    assert len(metrics["accuracy"]["per_epoch"]) == 1 and metrics["accuracy"]["best_epoch"] == 1
    assert metrics["firing_rate"]["total"] is None and metrics["synops"]["total_ac"] is None
    ckpt = torch.load(world.out.parent / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(v.isfinite().all() for v in ckpt["model"].values() if v.is_floating_point())
    again, err = call_cli(argv, capsys)  # a finished result, not retrained
    assert again == 0 and "already holds this run" in err


def test_huge_lr_is_recorded_as_diverged(world: World, capsys):
    code, err = call_cli(world.args("--epochs", "2", "--set", "lr=1e30"), capsys)
    assert code == 0 and "recorded as diverged" in err
    metrics = read_metrics(world.out)
    assert metrics["diverged"]["epoch"] in (1, 2) and "non-finite" in metrics["diverged"]["reason"]
    ckpt = world.out.parent / "checkpoint.pt"
    if ckpt.exists():  # whatever was saved is finite
        state = torch.load(ckpt, weights_only=True)["model"]
        assert all(v.isfinite().all() for v in state.values() if v.is_floating_point())


def test_disk_full_during_checkpoint_is_one_line(world: World, capsys, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".checkpoint.pt."):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file being written")
    monkeypatch.setattr(results.os, "fsync", fsync)
    code, err = call_cli(world.args(), capsys)
    assert_one_line_error(code, err.splitlines()[-1] + "\n", "No space left on device",
                          "rerun the same command to resume")
    assert list(world.out.parent.iterdir()) == []  # no checkpoint, no temp file, no metrics


# ---- 5. metrics files read during aggregation --------------------------------------------------


def damage_metrics(path: Path, kind: str) -> list[str]:
    """Damage a copy of a real metrics.json; the fragments read_metrics must report."""
    good = json.loads(path.read_text())
    if kind == "corrupt-json":
        path.write_text(path.read_text().replace('"method"', '"method', 1))
        return ["corrupt JSON", "delete the file and rerun its job"]
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:100])
        return ["corrupt JSON", "rerun its job"]
    if kind == "empty":
        path.write_text("")
        return ["corrupt JSON", "rerun its job"]
    if kind == "not-utf8":
        path.write_bytes(b"\xff\xfe" + path.read_bytes())
        return ["corrupt JSON", "rerun its job"]
    if kind == "not-an-object":
        path.write_text("[1, 2]")
        return ["expected a JSON object", "rerun its job"]
    if kind == "missing-field":
        del good["accuracy"]
        path.write_text(json.dumps(good))
        return ["'accuracy' is a required property", "rerun the job"]
    if kind == "wrong-type":
        good["accuracy"]["best"] = "high"
        path.write_text(json.dumps(good))
        return ["field accuracy/best", "rerun the job"]
    if kind == "schema-version":
        good["schema_version"] = 2
        path.write_text(json.dumps(good))
        return ["schema_version 2, expected 1", "rerun its job"]
    if kind == "no-schema-version":
        del good["schema_version"]
        path.write_text(json.dumps(good))
        return ["schema_version None, expected 1", "rerun its job"]
    if kind == "missing-file":
        path.unlink()
        return ["no such metrics file", "run the job that writes it"]
    path.unlink()  # "a-folder"
    path.mkdir()
    return ["cannot read", "must be a readable metrics.json file"]


@pytest.mark.parametrize("kind", ["corrupt-json", "truncated", "empty", "not-utf8",
                                  "not-an-object", "missing-field", "wrong-type",
                                  "schema-version", "no-schema-version", "missing-file",
                                  "a-folder"])
def test_read_metrics_rejects_with_one_line(world: World, kind: str):
    assert read_metrics(world.done)["method"] == "dsr-if"  # the intact file reads
    fragments = damage_metrics(world.done, kind)
    before = snapshot(world.root)
    with pytest.raises(ResultError) as err:
        read_metrics(world.done)
    message = str(err.value)
    assert "\n" not in message and str(world.done) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert snapshot(world.root) == before


# ---- 6. atomic writes --------------------------------------------------------------------------


class WriterFailed(Exception):
    pass


@pytest.mark.parametrize("error", [WriterFailed, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [True, False])
def test_atomic_write_leaves_nothing_when_the_writer_raises(tmp_path: Path, error, existing):
    target = tmp_path / "metrics.json"
    if existing:
        target.write_text("old result\n")
    before = snapshot(tmp_path)

    def write(f) -> None:
        f.write("half a new res")
        f.flush()
        raise error

    with pytest.raises(error):
        atomic_write(target, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["metrics.json"] if existing else [])
    assert snapshot(tmp_path) == before  # the old result, same bytes and mtime, or nothing


def test_atomic_write_replaces_whole_file_readable(tmp_path: Path):
    target = tmp_path / "sub" / "table.csv"
    atomic_write(target, lambda f: f.write("a,b\n"))
    atomic_write(target, lambda f: f.write(b"c,d\n"), mode="wb")
    assert target.read_text() == "c,d\n"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0o600
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_write_metrics_refuses_invalid_metrics_without_a_file(tmp_path: Path, done_run: Path):
    metrics = json.loads(done_run.read_text())
    del metrics["firing_rate"]
    with pytest.raises(ResultError, match="firing_rate"):
        results.write_metrics(tmp_path / "metrics.json", metrics)
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temps_only_touches_its_own(tmp_path: Path):
    keep = ["checkpoint.pt", "metrics.json", ".metrics.json.abc.tmp", "other.tmp"]
    for name in [*keep, ".checkpoint.pt.k2j3.tmp", ".checkpoint.pt.x.tmp"]:
        (tmp_path / name).write_text(name)
    remove_stale_temps(tmp_path / "checkpoint.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


# ---- 7. resume after SIGKILL -------------------------------------------------------------------

# 8 steps per epoch, dropout (so the global RNG state matters), T = 4 so that accuracy moves
RESUME_ARGS = ["--method", "dsr-if", "--dataset", "digits", "--time-steps", "4", "--epochs", "3",
               "--seed", "3", "--device", "cpu", "--set", "base_width=4", "--set", "dropout=0.2",
               "--set", "train_subset=400", "--set", "batch_size=50", "--set", "warmup_iters=4",
               "--set", "v_th=1", "--set", "latency_batches=1"]
STEPS_PER_EPOCH = 8
TIMING_FIELDS = ("latency", "cost", "provenance")  # wall-clock and machine: not deterministic


def paused_main(argv: list[str]) -> int:
    """dsr.run.main, stopped for good at $RELIABILITY_PAUSE once $RELIABILITY_MARKER exists:
    "step:N" before the N-th optimiser step of this process, "checkpoint:E" halfway through
    writing the checkpoint of epoch E (its temporary file holds half the bytes), or "after:E"
    once the checkpoint of epoch E is in place; "signal:N" pauses before the N-th step until a
    signal arrives, then goes on (the run's own handler decides what the signal does)."""
    import signal as signals

    import dsr.harness.checkpoint
    import dsr.method

    kind, _, n = os.environ["RELIABILITY_PAUSE"].partition(":")
    marker, n, calls = Path(os.environ["RELIABILITY_MARKER"]), int(n), [0]

    def stop() -> None:
        marker.touch()
        while True:
            time.sleep(60)

    if kind in ("step", "signal"):
        real_loss = dsr.method.Method.loss

        def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
            calls[0] += 1
            if calls[0] == n and kind == "signal":
                marker.touch()
                signals.pause()
            elif calls[0] == n:
                stop()
            return real_loss(self, outputs, y)

        dsr.method.Method.loss = loss
    else:
        real_write = dsr.harness.checkpoint.atomic_write

        def atomic_write(path, write, mode="w"):
            if Path(path).name == "checkpoint.pt":
                calls[0] += 1
                if calls[0] == n and kind == "after":
                    real_write(path, write, mode)
                    stop()
                if calls[0] == n:
                    def torn(f) -> None:
                        buf = io.BytesIO()
                        write(buf)
                        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                        f.flush()
                        stop()

                    return real_write(path, torn, mode)
            return real_write(path, write, mode)

        dsr.harness.checkpoint.atomic_write = atomic_write
    return cli.main(argv)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}


def train(out: Path) -> None:
    log = out.parent / "log.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        proc = subprocess.run([sys.executable, "-m", "dsr.run", *RESUME_ARGS, "--out", str(out)],
                              cwd=REPO, env=env(), stderr=f, timeout=600)
    assert proc.returncode == 0, log.read_text()


def start_killable(out: Path, pause: str | None) -> tuple[subprocess.Popen, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    marker = out.parent.parent / "paused"
    cmd = [sys.executable, "-c", "import sys, test_reliability as t; sys.exit(t.paused_main("
           "sys.argv[1:]))"] if pause else [sys.executable, "-m", "dsr.run"]
    extra = {"RELIABILITY_PAUSE": pause, "RELIABILITY_MARKER": str(marker)} if pause else {}
    log = open(out.parent / "log.txt", "a")  # the child keeps its own descriptor
    proc = subprocess.Popen([*cmd, *RESUME_ARGS, "--out", str(out)], cwd=REPO,
                            env={**env(), **extra}, stderr=log)
    log.close()
    return proc, marker


def wait_for(proc: subprocess.Popen, ready, what: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"run ended (status {proc.returncode}) before {what}: {log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def checkpoint_epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metrics.json of the uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run" / "metrics.json"
    train(out)
    return out


# (id, pause point, check on the folder right after the kill); about 12 s of CPU each
KILL_POINTS = [
    pytest.param(None, "checkpoint", id="after-first-checkpoint"),
    pytest.param("checkpoint:2", "torn write", id="mid-checkpoint-write"),
    pytest.param(f"step:{2 * STEPS_PER_EPOCH + 3}", "checkpoint 2", id="mid-epoch-3"),
    pytest.param(f"step:{STEPS_PER_EPOCH // 2}", "no checkpoint", id="mid-epoch-1",
                 marks=pytest.mark.slow),
    pytest.param("after:3", "checkpoint 3", id="before-metrics", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("pause, expect", KILL_POINTS)
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path: Path, reference: Path, pause, expect):
    out = tmp_path / "run" / "metrics.json"
    ckpt, log = out.parent / "checkpoint.pt", out.parent / "log.txt"
    proc, marker = start_killable(out, pause)
    try:
        if pause is None:  # from outside: the first epoch's log line, then its checkpoint
            wait_for(proc, lambda: "epoch 1/3" in log.read_text() and ckpt.exists(),
                     "the first checkpoint", log)
        else:
            wait_for(proc, marker.exists, pause, log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    temps = sorted(p.name for p in out.parent.glob(".*.tmp"))
    if expect == "no checkpoint":
        assert not ckpt.exists()
    elif expect == "checkpoint":
        assert checkpoint_epoch(ckpt) in (1, 2)  # killed right after it appeared, before the end
    elif expect == "torn write":  # the old checkpoint survives the half-written new one
        assert checkpoint_epoch(ckpt) == 1
        assert len(temps) == 1 and temps[0].startswith(".checkpoint.pt.")
        torn = out.parent / temps[0]
        assert 0 < torn.stat().st_size < ckpt.stat().st_size
        with pytest.raises(Exception):  # noqa: B017 (whatever torch raises for a torn zip)
            torch.load(torn, weights_only=True)
    else:
        assert checkpoint_epoch(ckpt) == int(expect.split()[-1])

    train(out)  # the same command again
    assert "resuming" in log.read_text() or expect == "no checkpoint"
    assert not list(out.parent.glob(".*.tmp")), "stale temporary files are cleaned on resume"

    got = json.loads(out.read_text())
    assert len(got["accuracy"]["per_epoch"]) == 3 and len(set(got["train_loss"])) == 3
    assert_same_end(out, reference)


def assert_same_end(out: Path, reference: Path) -> None:
    """The resumed run's metrics and final checkpoint equal the uninterrupted run's."""
    got, want = json.loads(out.read_text()), json.loads(reference.read_text())
    for name in TIMING_FIELDS:
        got.pop(name), want.pop(name)
    assert got == want  # accuracy per epoch, train_loss, firing rates, synops, config, data
    a = torch.load(out.parent / "checkpoint.pt", weights_only=True)
    b = torch.load(reference.parent / "checkpoint.pt", weights_only=True)
    for part in ("model", "optimizer", "scheduler"):
        assert_same(a[part], b[part], part)
    assert torch.equal(a["rng"]["cpu"], b["rng"]["cpu"]) and a["epoch"] == b["epoch"] == 3
    for machine in ("seconds", "memory", "reserved"):  # measured: not deterministic
        a["history"].pop(machine), b["history"].pop(machine)
    assert a["history"] == b["history"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["TERM", "USR1"])
def test_stop_signal_checkpoints_the_step_and_the_rerun_equals_uninterrupted(
        tmp_path: Path, reference: Path, signum: int):
    """What Slurm sends before a time limit or a preemption: the current step finishes, its
    state is checkpointed mid-epoch, the run exits 75; the same command resumes at that step
    and ends exactly as the uninterrupted run."""
    out = tmp_path / "run" / "metrics.json"
    step = STEPS_PER_EPOCH + 3  # the third step of epoch 2
    proc, marker = start_killable(out, f"signal:{step}")
    wait_for(proc, marker.exists, "the paused step", out.parent / "log.txt")
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == cli.PREEMPTED
    log = (out.parent / "log.txt").read_text()
    assert f"preempted: stopped by signal {signum} in epoch 2 after step 3" in log
    ckpt = torch.load(out.parent / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["partial"]["step"]) == (1, 3) and not out.exists()
    train(out)
    assert "at epoch 2, step 3" in (out.parent / "log.txt").read_text()
    assert_same_end(out, reference)


def assert_same(a, b, where: str) -> None:
    """Nested state dicts equal, tensors bit for bit."""
    if isinstance(a, Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b, where


def test_provenance_is_the_code_a_run_started_with(tmp_path: Path, monkeypatch):
    """A commit made while a run trains must not be recorded as the code that ran."""
    from dsr.harness import provenance
    from dsr.harness import train as dsr_train

    calls = []
    real = provenance.subprocess.run

    def git(args, **kw):  # what git answers: HEAD moves and the tree turns dirty after epoch 1
        if args[0] != "git":
            return real(args, **kw)
        calls.append(args[1])
        out = real(["true"], **kw)
        late = any("epoch 1/" in line for line in logged)
        if args[1] == "rev-parse":
            out.stdout = "b" * 40 if late else "a" * 40
        else:
            out.stdout = " M dsr/harness/train.py" if late else ""
        return out

    logged: list[str] = []
    monkeypatch.setattr(provenance.subprocess, "run", git)
    argv = ["--method", "dsr-if", *TINY, "--epochs", "2", "--out", str(tmp_path / "m.json")]
    cfg, method_cls = cli.resolve_args(cli.parser().parse_args(argv))
    m = dsr_train.run(cfg, method_cls, tmp_path / "m.json", log=logged.append)
    assert any("epoch 1/2" in line for line in logged) and sorted(set(calls)) == [
        "rev-parse", "status"]
    assert m.provenance["git_commit"] == "a" * 40 and m.provenance["git_dirty"] is False


def test_second_process_on_a_run_is_refused_in_one_line(tmp_path: Path):
    """Two processes in one run folder, the second started from another working directory:
    it is refused in one line, naming the first, and touches nothing of it."""
    out = tmp_path / "run" / "metrics.json"
    proc, marker = start_killable(out, "signal:3")
    try:
        wait_for(proc, marker.exists, "the paused step", out.parent / "log.txt")
        before = snapshot(out.parent)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        second = subprocess.run([sys.executable, "-m", "dsr.run", *RESUME_ARGS, "--out",
                                 str(out)], cwd=elsewhere, env=env(), capture_output=True,
                                text=True, timeout=300)
        assert_one_line_error(second.returncode, second.stderr,
                              f"another process (pid {proc.pid} on", "is running this run",
                              "wait for it to finish")
        assert snapshot(out.parent) == before
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == cli.PREEMPTED
    assert not list(out.parent.glob(".*.lock"))  # released, and removed, by its holder
