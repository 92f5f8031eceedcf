"""Evaluation: one loop over a split drives the metric objects attached to the network.

Each metric object (dsr.metrics.SpikeCounter, SynOpsCounter) attaches its hooks for the loop
and reports afterwards, so training and conversion measure the same way. Which network is
evaluated is the stage's declaration (dsr.stages.Stage.evaluates), not a flag on the method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from dsr import metrics as M
from dsr.cost import measure_latency
from dsr.stages import Stage

if TYPE_CHECKING:
    from dsr.config import RunConfig
    from dsr.data import Dataset
    from dsr.method import Method


class Attached(Protocol):
    def attach(self) -> contextlib.AbstractContextManager: ...


@dataclass
class Evaluation:
    accuracy: float
    net: nn.Module  # the evaluated network
    counter: M.SpikeCounter
    synops: dict[str, Any] | None


def evaluated(model: nn.Module, method: Method, stage: Stage, data: Dataset
              ) -> tuple[nn.Module, list[nn.Module]]:
    """The network `stage` evaluates and its spiking layers: the method's inference network
    ("snn") or the trained network itself, with no spikes ("ann")."""
    if stage.evaluates == "ann":
        return model.eval(), []
    net = method.inference_model(model, data).eval()
    return net, method.spiking_layers(net)


@torch.no_grad()
def accuracy(net: nn.Module, method: Method, data: Dataset, split: str, batch_size: int,
             device: torch.device, attached: Sequence[Attached] = ()) -> tuple[float, int]:
    """The accuracy of `net` over `split` and how many samples it saw, with the metric objects
    `attached` (hooks on `net`) measuring the same pass."""
    correct = seen = 0
    with contextlib.ExitStack() as stack:
        for metric in attached:
            stack.enter_context(metric.attach())
        for x, y in data.batches(split, batch_size, device=device):
            correct += int((method.logits(net, x).argmax(-1) == y).sum())
            seen += len(y)
    return correct / max(1, seen), seen


def evaluate(net: nn.Module, layers: list[nn.Module], method: Method, data: Dataset,
             cfg: RunConfig, device: torch.device, synops: bool = False) -> Evaluation:
    """Test accuracy and firing rates of `layers` over the test split (+ SynOps when asked);
    the split is the fixed subset when test_subset is set."""
    t = cfg.train
    counter = M.SpikeCounter(layers)
    ops = M.SynOpsCounter(net, layers) if synops else None
    attached = [counter] if ops is None else [counter, ops]
    acc, seen = accuracy(net, method, data, "test", t.eval_batch_size, device, attached)
    report = ops.report(seen, t.pj_per_ac, t.pj_per_mac) if ops else None
    return Evaluation(acc, net, counter, report)


def latency(net: nn.Module, method: Method, data: Dataset, cfg: RunConfig, device: torch.device,
            batch: int | None = None) -> dict[str, float]:
    """Milliseconds per sample of `method.logits(net, .)` on the first test batch, at batch 1
    and at `batch` (default eval_batch_size): metrics.json "latency.ms_per_sample"."""
    x, _ = next(iter(data.batches("test", batch or cfg.train.eval_batch_size, device=device)))
    return measure_latency(lambda inp: method.logits(net, inp), x, cfg.train.latency_batches)
