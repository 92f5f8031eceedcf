"""The harness's pure parts: the learning-rate schedule (and its batch count under DDP), the
metrics.json record built from measured values, and the training cost it records (with the
CPU training-memory measurement checked against a known allocation)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dsr import data as dsr_data
from dsr.config import RunConfig, TrainConfig
from dsr.harness.cost import TrainingMemory
from dsr.harness.evaluate import Evaluation
from dsr.harness.metrics import SpikeCounter
from dsr.harness.record import (
    Accuracy,
    Cost,
    FiringRate,
    Latency,
    RunRecord,
    TrainingMemoryRecord,
    trained_record,
    training_cost,
)
from dsr.harness.results import SCHEMA_VERSION, validate
from dsr.harness.train import Dist, make_schedule


class Split:
    """A training split of `n` samples; batches are counted by dsr.data.Dataset's own rule."""

    num_batches = dsr_data.Dataset.num_batches

    def __init__(self, n: int):
        self.n = n

    def split_size(self, split: str) -> int:
        return self.n


def lrs(world_size: int, epochs: int = 2, steps: int = 9) -> list[float]:
    """The lr of each of `steps` optimiser steps: 100 samples at batch 32, warm-up 2."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    t = TrainConfig(batch_size=32, lr=0.1, warmup_iters=2)
    sched = make_schedule(opt, t, Split(100), Dist(world_size - 1, world_size), epochs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedule_warms_up_then_anneals_to_zero_at_the_last_step():
    got = lrs(world_size=1)  # 4 batches per epoch (the ragged last one kept): 8 steps
    assert got[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert all(a > b for a, b in zip(got[2:8], got[3:9], strict=True))
    assert got[5] == pytest.approx(0.05)  # halfway through the cosine
    assert got[8] == pytest.approx(0.0, abs=1e-12)


def test_ddp_drops_the_ragged_batch_so_the_schedule_is_shorter():
    assert not Dist(0, 1).drop_last and Dist(1, 2).drop_last
    got = lrs(world_size=2, steps=7)  # 3 full batches per epoch: 6 steps
    assert got[4] == pytest.approx(0.05) and got[6] == pytest.approx(0.0, abs=1e-12)
    assert lrs(world_size=1, epochs=1, steps=5)[4] == pytest.approx(0.0, abs=1e-12)


def record(accuracy: list[float]) -> tuple[dict, dict]:
    cfg = RunConfig(method="dsr-if", dataset="digits", arch="tiny", time_steps=4, seed=3,
                    mode="fast", train=TrainConfig(epochs=len(accuracy)),
                    params={"v_th": 1.0, "lower_bound": 0.01, "alpha": 0.5})
    method = type("Method", (), {"category": "ours", "neuron": "IF"})()
    info = dsr_data.DataInfo("digits", 10, 1, 8, False, None, None, 1437, 360, "sklearn",
                             "none")
    net = nn.Sequential(nn.Linear(4, 4), nn.Identity(), nn.Linear(4, 2), nn.Identity())
    counter = SpikeCounter([net[1], net[3]])
    counter.spikes, counter.slots = [1, 6], [4, 8]
    synops = {"per_layer": [], "total_ac": 7.0, "total_mac": 16.0, "energy_pj": 9.0}
    history = {"accuracy": accuracy, "loss": [1.0] * len(accuracy),
               "seconds": [0.5] * len(accuracy), "rate": [0.4] * len(accuracy)}
    given = {"latency": {"batch_1": 2.0, "batch_8": 0.5}, "memory": (123, "cpu_peak_rss"),
             "device": "cpu", "prov": {"git_commit": None, "git_dirty": None, "packages": {},
                                       "device": "cpu: x86_64", "start_time": "s",
                                       "end_time": "e"}}
    last = Evaluation(accuracy[-1], net, counter, synops)
    return trained_record(cfg, method, info, last, history, **given), given | {"cfg": cfg}


def test_record_holds_the_measured_values_and_the_first_best_epoch():
    m, given = record([0.5, 0.8, 0.8, 0.7])
    validate(json.loads(json.dumps(m.to_json())))  # the metrics.json schema
    assert m.schema_version == SCHEMA_VERSION
    assert (m.method, m.category, m.neuron, m.time_steps, m.seed, m.epochs) == (
        "dsr-if", "ours", "IF", 4, 3, 4)
    assert m.accuracy == Accuracy(best=0.8, final=0.7, best_epoch=2,
                                  per_epoch=[0.5, 0.8, 0.8, 0.7], validation_selected=None)
    assert m.to_json()["accuracy"] == {"best": 0.8, "final": 0.7, "best_epoch": 2,
                                       "per_epoch": [0.5, 0.8, 0.8, 0.7],
                                       "validation_selected": None}  # null written, not left out
    assert m.firing_rate == FiringRate(per_layer=[0.25, 0.75], total=7 / 12,
                                       layer_names=["1", "3"], per_epoch_total=[0.4] * 4)
    assert m.synops.total_ac == 7.0 and m.train_loss == [1.0] * 4
    assert m.latency == Latency(time_steps=4, ms_per_sample=given["latency"], device="cpu")
    assert m.cost == Cost(seconds_per_epoch=[0.5] * 4, peak_memory_bytes=123,
                          peak_memory_kind="cpu_peak_rss")
    assert m.to_json()["cost"] == {"seconds_per_epoch": [0.5] * 4, "peak_memory_bytes": 123,
                                   "peak_memory_kind": "cpu_peak_rss"}
    assert m.data.train_size == 1437 and m.data.source == "sklearn"
    assert m.provenance is given["prov"]
    assert m.config_hash == given["cfg"].hash and m.config == given["cfg"].to_dict()
    assert RunRecord.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_record_of_a_single_epoch_is_best_and_final():
    m, _ = record([0.25])
    assert m.accuracy.best == m.accuracy.final == 0.25
    assert m.accuracy.best_epoch == 1


def test_training_cost_is_recorded_per_epoch_and_step():
    history = {"seconds": [2.0, 3.0], "steps": [20, 30], "memory": [5 * 2**20, 7 * 2**20],
               "reserved": [None, None]}
    cost = training_cost(history, (10 * 2**20, "cpu_peak_rss"), "cpu_rss_growth")
    assert cost.seconds_per_step == [0.1, 0.1]
    assert cost.training_memory == TrainingMemoryRecord(
        kind="cpu_rss_growth", peak_bytes=7 * 2**20, reserved_bytes=None,
        per_epoch_bytes=[5 * 2**20, 7 * 2**20])
    assert "training_memory" not in training_cost(history, (1, "cpu_peak_rss"), None).to_json()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's VmHWM reset")
def test_training_memory_sees_a_known_allocation_and_resets_per_epoch():
    """An independent count: a 256 MiB tensor allocated and freed inside an epoch is its peak
    growth (to within the allocator's slack); the next epoch, which allocates nothing, is not."""
    memory = TrainingMemory(torch.device("cpu"))
    memory.start_epoch()
    block = torch.ones(64 * 2**20)  # 256 MiB of float32, every page written
    del block
    peak, reserved = memory.end_epoch()
    assert reserved is None and 250 * 2**20 <= peak <= 300 * 2**20
    memory.start_epoch()
    small = torch.ones(2**10)
    assert memory.end_epoch()[0] < 64 * 2**20 and small.sum() == 2**10
    assert memory.process_peak()[0] >= peak  # the process peak keeps what the resets hid
    assert memory.kind == "cpu_rss_growth"
