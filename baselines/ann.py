"""`ann`: the ReLU twin of each architecture (dsr.models.ReLU as the neuron), the accuracy ceiling.

Same layers, BN, data and schedule as the spiking methods; T is irrelevant (static input runs
once, event frames are averaged as logits) but recorded. Head: output_neuron=False by default,
i.e. the logits are the last FC's outputs. The exact twin of the DSR head (FC -> BN1d -> ReLU,
`--set output_neuron=true`) clips logits at 0, which no classifier needs; the conversion
baselines convert this default ANN, and the DSR ImageNet hybrid builds its own exact twin.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsr import models
from dsr.method import Method


@dataclass(frozen=True)
class ANNParams:
    output_neuron: bool = False  # True: end in BN1d + ReLU like the DSR networks


class ANN(Method):
    key, category, neuron, spiking, Params = "ann", "ANN", "ReLU", False, ANNParams

    def __init__(self, cfg):
        super().__init__(cfg)
        self.output_neuron = self.p.output_neuron

    def neuron_factory(self) -> models.NeuronFactory:
        return models.ReLU
