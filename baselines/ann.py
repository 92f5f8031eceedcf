"""`ann`: the ReLU twin of each architecture (dsr.snn.models.ReLU as the neuron), the accuracy
ceiling.

Same layers, BN, data and schedule as the spiking methods; T is irrelevant (static input runs
once, event frames are averaged as logits) but recorded. Head: no activation after the last FC,
whose outputs are the logits: the DSR head's BN1d + ReLU there would clip logits at 0, which no
classifier needs. The conversion baselines convert this ANN; the DSR ImageNet hybrid builds its
own exact twin (`dsr.method._ANNTwin`).
"""

from __future__ import annotations

from dsr.method import Method
from dsr.snn import models


class ANN(Method):
    key, spiking = "ann", False
    output_neuron = False

    def neuron_factory(self) -> models.NeuronFactory:
        return models.ReLU
