"""A run's stages, declared by its method as data (`Method.stages`) and run by the harness.

`dsr.harness.train` runs the stages before `convert` in order (every one but the last on a fresh run
only; the last is the checkpointed epochs), `dsr.harness.convert` runs `convert`. What a stage
evaluates is part of its declaration: "snn" is the method's inference network
(`Method.inference_model`, its `spiking_layers` counted; an ANN method's has none), "ann" the
trained network itself with no spikes counted (QCFS trains its quantised ANN; its conversion run
evaluates the SNN). Torch-free, so the workflow can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dsr.config import ConfigError


@dataclass(frozen=True)
class Stage:
    """One step of a run: `name` picks what the harness does, `evaluates` which network its
    evaluation reads (None: it evaluates nothing), `epochs` how long it trains (None: the
    run's --epochs)."""

    name: str
    evaluates: Literal["ann", "snn"] | None = None
    epochs: int | None = None


TRAIN = Stage("train", evaluates="snn")
TRAIN_ANN = Stage("train-ann", evaluates="ann")
FINE_TUNE = Stage("fine-tune", evaluates="snn")  # the hybrid's training, after calibrate
CALIBRATE = Stage("calibrate")
CONVERT = Stage("convert", evaluates="snn")
PRETRAIN_ANN = "pretrain-ann"
# the stages that train the run's own network, checkpointed epoch by epoch
TRAINING = frozenset({TRAIN.name, TRAIN_ANN.name, FINE_TUNE.name})


def pretrain_ann(epochs: int) -> Stage:
    """Train the method's ANN twin (`Method.ann_twin`) for `epochs`; evaluates nothing."""
    return Stage(PRETRAIN_ANN, epochs=epochs)


def training_stages(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """What a training run (`dsr.harness.train.run`) runs: the stages before `convert`, ending in
    one of TRAINING that evaluates something; empty for a method that never trains."""
    names = [s.name for s in stages]
    before = stages[:names.index(CONVERT.name)] if CONVERT.name in names else stages
    if before and (before[-1].name not in TRAINING or before[-1].evaluates is None):
        raise ConfigError(f"stages {names}: the last before convert must train the run's "
                          f"network ({', '.join(sorted(TRAINING))}) and evaluate it")
    return before
