"""Evaluation: one loop over a split (`run_pass`) drives the metric objects of the pass.

Each metric object attaches its hooks to the network for the pass, is updated with the logits
and labels after every forward and reports afterwards (NeuroBench's pattern): `Correct` here,
dsr.harness.metrics.SpikeCounter and SynOpsCounter (hooks only), and the conversion's latency sweep
(dsr.harness.convert.PrefixAccuracy), so training and conversion measure in the same loop. Which
network is evaluated is the stage's declaration (dsr.stages.Stage.evaluates), not a flag on
the method. Latency is timed apart from the pass (`latency`), on its first batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from dsr.harness import metrics as M
from dsr.harness.cost import measure_latency
from dsr.stages import Stage

if TYPE_CHECKING:
    from dsr.config import RunConfig
    from dsr.data import Dataset
    from dsr.method import Method


class Metric(Protocol):
    def attach(self) -> contextlib.AbstractContextManager:
        """Hooks on the network while the pass runs."""

    def update(self, logits: Tensor, y: Tensor) -> None:
        """After each forward: its logits and labels."""


class Correct:
    """Correct answers (argmax of the logits) and samples seen over the pass."""

    def __init__(self) -> None:
        self.correct = self.seen = 0

    def attach(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(self)

    def update(self, logits: Tensor, y: Tensor) -> None:
        self.correct += int((logits.argmax(-1) == y).sum())
        self.seen += len(y)

    def accuracy(self) -> float:
        return self.correct / max(1, self.seen)


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
def run_pass(net: nn.Module, method: Method, data: Dataset, split: str, batch_size: int,
             device: torch.device, metrics: Sequence[Metric], chunk: int | None = None) -> None:
    """One pass of `net` over `split`, every metric attached and updated after each forward;
    with `chunk`, at most that many samples per forward (batches are [B, ...] or [T, B, ...]:
    the sample axis is the 4th from the end)."""
    with contextlib.ExitStack() as stack:
        for metric in metrics:
            stack.enter_context(metric.attach())
        for batch, labels in data.batches(split, batch_size, device=device):
            pieces = ([(batch, labels)] if chunk is None else
                      zip(batch.split(chunk, batch.dim() - 4), labels.split(chunk), strict=True))
            for x, y in pieces:
                logits = method.logits(net, x)
                for metric in metrics:
                    metric.update(logits, y)


def accuracy(net: nn.Module, method: Method, data: Dataset, split: str, batch_size: int,
             device: torch.device) -> float:
    """The accuracy of `net` over `split` (the validation split held out with val_fraction)."""
    correct = Correct()
    run_pass(net, method, data, split, batch_size, device, [correct])
    return correct.accuracy()


def evaluate(net: nn.Module, layers: list[nn.Module], method: Method, data: Dataset,
             cfg: RunConfig, device: torch.device, synops: bool = False) -> Evaluation:
    """Test accuracy and firing rates of `layers` over the test split (+ SynOps when asked);
    the split is the fixed subset when test_subset is set."""
    t = cfg.train
    correct, counter = Correct(), M.SpikeCounter(layers)
    ops = M.SynOpsCounter(net, layers) if synops else None
    metrics = [correct, counter] if ops is None else [correct, counter, ops]
    run_pass(net, method, data, "test", t.eval_batch_size, device, metrics)
    report = ops.report(correct.seen, t.pj_per_ac, t.pj_per_mac) if ops else None
    return Evaluation(correct.accuracy(), net, counter, report)


def latency(net: nn.Module, method: Method, data: Dataset, cfg: RunConfig, device: torch.device,
            batch: int | None = None) -> dict[str, float]:
    """Milliseconds per sample of `method.logits(net, .)` on the first test batch, at batch 1
    and at `batch` (default eval_batch_size): metrics.json "latency.ms_per_sample"."""
    x, _ = next(iter(data.batches("test", batch or cfg.train.eval_batch_size, device=device)))
    return measure_latency(lambda inp: method.logits(net, inp), x, cfg.train.latency_batches)
