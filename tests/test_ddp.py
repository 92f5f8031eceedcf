"""DistributedDataParallel on CPU (gloo, 2 processes) against one process on the same global batch.

DDP averages gradients over ranks, and each rank's loss is the mean over its half of the global
batch, so the averaged gradient is the one-process gradient of the whole batch; in particular
dL/dv_th is not multiplied by the number of processes (the official code's all-reduce-sum bug,
spec section 3). BatchNorm in training mode normalises with each process's own T x B statistics
(no SyncBatchNorm, as the official code), which legitimately changes the gradient; equality with
one process is therefore checked with BN in eval mode (running statistics set identically
beforehand) and, through the real harness, on a small network without BN; with BN in training
mode fast and exact mode are checked equal to each other under DDP.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from dsr import REPO_ROOT as ROOT
from dsr.config import RunConfig, TrainConfig
from dsr.method import DSRIF
from dsr.snn import models
from dsr.snn.layers import FastForward, conv, fast_forward, flatten, linear
from dsr.snn.models import SpikingNet, tag
from dsr.snn.neuron import IFNeuron

WORLD = 2
GLOBAL_BATCH = 8
T = 3


# ---- model level: preact_resnet8, BN in eval mode ----------------------------------------------


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    factory = functools.partial(IFNeuron, T, v_th=1.0, lower_bound=0.01)
    model = models.create("preact_resnet8", factory, num_classes=10, base_width=4).double()
    x, _ = _data(GLOBAL_BATCH, seed=1)
    with torch.no_grad():  # identical, non-trivial running statistics on every rank
        model.train()
        model(x)
    return model.eval()


def _data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=gen, dtype=torch.float64) * 2
    return x, torch.randint(0, 10, (n,), generator=gen)


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _model_level_grads(mode: str, rank: int, world: int, bn_train: bool = False
                       ) -> dict[str, Tensor]:
    """First-step gradients on this rank's share of the global batch, the way the harness wraps
    the model: DDP(FastForward(model)) in fast mode, DDP(model) in exact mode. "bypass" calls
    fast_forward on the unwrapped model, which DDP never sees."""
    model = _resnet().train(bn_train)
    inner = FastForward(model) if mode == "fast" else model
    net = nn.parallel.DistributedDataParallel(inner) if world > 1 else inner
    x, y = _data(GLOBAL_BATCH, seed=2)
    x, y = x[rank::world], y[rank::world]  # the data layer's sharding of the global batch
    out = fast_forward(model, x) if mode == "bypass" else net(x)
    F.cross_entropy(out, y).backward()
    return _grads(model)


def _shard_grads(rank: int) -> dict[str, Tensor]:
    """One process, fast mode, on rank `rank`'s share only."""
    model = _resnet()
    x, y = _data(GLOBAL_BATCH, seed=2)
    F.cross_entropy(fast_forward(model, x[rank::WORLD]), y[rank::WORLD]).backward()
    return _grads(model)


# ---- harness level: the real harness and DSR method, a network without BN ---------------------


class TinyNet(SpikingNet):
    """conv -> IF -> linear -> IF readout: DSR's fast and exact paths, no BatchNorm."""

    def __init__(self, neuron: models.NeuronFactory):
        super().__init__()
        self.conv, self.n1 = conv(3, 4, 3), tag(neuron())
        self.flat, self.fc = flatten(), linear(4 * 16 * 16, 10)
        self.n_out = tag(neuron())
        self.output_neuron = self.n_out

    def sequence(self, x: Tensor) -> Tensor:
        return self.n_out(self.fc(self.flat(self.n1(self.conv(self._input(x))))))


class TinyDSR(DSRIF):
    def build(self, arch, info) -> nn.Module:
        return TinyNet(self.neuron_factory()).double()


class SyntheticData:
    """The two methods of dsr.data.Dataset the harness uses, with the same sharding rule."""

    def __init__(self, n: int = 2 * GLOBAL_BATCH):
        self.x, self.y = _data(n, seed=3)

    def num_batches(self, split: str, batch_size: int, world_size: int = 1, **_) -> int:
        return len(self.y) // batch_size

    def batches(self, split: str, batch_size: int, *, rank: int = 0, world_size: int = 1, **_):
        for i in range(0, len(self.y), batch_size):
            x, y = self.x[i:i + batch_size], self.y[i:i + batch_size]
            yield x[rank::world_size], y[rank::world_size]


def _trainer_level_params(mode: str, rank: int, world: int) -> dict[str, Tensor]:
    from dsr.harness import optim, train

    cfg = RunConfig(method="dsr-if", dataset="digits", arch="tiny", time_steps=T, seed=0,
                    mode=mode, train=TrainConfig(epochs=1, batch_size=GLOBAL_BATCH, lr=0.5,
                                                 warmup_iters=1),
                    params={"v_th": 1.0, "lower_bound": 0.01, "alpha": 0.5})
    method = TinyDSR(cfg)
    torch.manual_seed(0)
    model = method.build(cfg.arch, None)
    device, dist_ = torch.device("cpu"), train.Dist(rank, world)
    net = train.training_module(model, method, device, dist_)  # DDP(FastForward(model)) if fast
    opt = train.make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, optim.lr_lambda(1, 2))
    train.train_one_epoch(net, method, SyntheticData(), opt, sched, cfg, 0, device,
                          dist_)  # two SGD steps
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---- processes ---------------------------------------------------------------------------------

SCENARIOS = {
    "model-fast": functools.partial(_model_level_grads, "fast"),
    "model-exact": functools.partial(_model_level_grads, "exact"),
    "model-bypass": functools.partial(_model_level_grads, "bypass"),
    "bntrain-fast": functools.partial(_model_level_grads, "fast", bn_train=True),
    "bntrain-exact": functools.partial(_model_level_grads, "exact", bn_train=True),
    "trainer-fast": functools.partial(_trainer_level_params, "fast"),
    "trainer-exact": functools.partial(_trainer_level_params, "exact"),
}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        results = {name: run(rank, world) for name, run in SCENARIOS.items()}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs() -> dict[str, list[dict[str, Tensor]]]:
    """{scenario: [one-process result, rank 0 result, rank 1 result]}."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(WORLD, os.path.join(tmp, "init"), tmp), nprocs=WORLD)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
    return {name: [run(0, 1), *(r[name] for r in ranks)] for name, run in SCENARIOS.items()}


def _assert_same(want: dict[str, Tensor], got: dict[str, Tensor], what: str) -> None:
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-12,
                                   msg=lambda m, n=name: f"{what}, {n}: {m}")


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_ddp_first_step_gradients_equal_one_process(runs, mode: str) -> None:
    one, *ranks = runs[f"model-{mode}"]
    assert any(g.abs().sum() > 0 for n, g in one.items() if n.endswith("v_th"))
    for r, grads in enumerate(ranks):
        _assert_same(one, grads, f"{mode} mode, rank {r} vs one process")


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_threshold_gradient_not_multiplied_by_processes(runs, mode: str) -> None:
    one, *ranks = runs[f"model-{mode}"]
    for name in (n for n in one if n.endswith("v_th") and one[n] != 0):
        for grads in ranks:
            ratio = float(grads[name] / one[name])
            assert ratio == pytest.approx(1.0, rel=1e-9), f"{name}: {ratio} x one process"


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_trainer_under_ddp_matches_one_process(runs, mode: str) -> None:
    one, *ranks = runs[f"trainer-{mode}"]
    _assert_same(ranks[0], ranks[1], f"{mode} mode: parameters of rank 0 vs rank 1")
    _assert_same(one, ranks[0], f"{mode} mode: parameters after 2 steps vs one process")


def test_ddp_fast_equals_exact_with_bn_in_training(runs) -> None:
    """BN in training mode (each rank's own T x B statistics): fast mode's record pass, which
    contracts BN's coupling term during DDP's forward, still gives exact mode's averaged
    gradients on every rank."""
    _, *fast = runs["bntrain-fast"]
    _, *exact = runs["bntrain-exact"]
    for r in range(WORLD):
        _assert_same(exact[r], fast[r], f"BN train, rank {r}: fast vs exact")
    _assert_same(fast[0], fast[1], "BN train, fast: rank 0 vs rank 1")


def test_fast_forward_around_ddp_skips_the_all_reduce(runs) -> None:
    """Why the harness wraps FastForward inside DDP: DDP prepares its gradient all-reduce in its
    own forward, so fast_forward on the unwrapped model leaves each rank with its share's
    gradient, silently training a different model per process."""
    one, *ranks = runs["model-bypass"]
    for r, grads in enumerate(ranks):
        _assert_same(_shard_grads(r), grads, f"bypass, rank {r} vs its own share")
        assert not torch.allclose(grads["fc.module.weight"], one["fc.module.weight"])


# ---- the CLI under torchrun ---------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_cli_digits_smoke(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    out = tmp_path / "metrics.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dsr.run", "--method", "dsr-if",
         "--dataset", "digits", "--time-steps", "2", "--epochs", "1", "--device", "cpu",
         "--set", "train_subset=200", "--set", "latency_batches=1", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    metrics = json.loads(out.read_text())
    assert metrics["provenance"]["world_size"] == 2
    assert metrics["mode"] == "fast" and len(metrics["accuracy"]["per_epoch"]) == 1
