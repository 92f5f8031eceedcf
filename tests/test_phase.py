"""The phase protocol (dsr.snn.phase): the validated setter, and `set_phase` reaching exactly the
phase-aware modules of every architecture (by class, not by attribute)."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import neuron
from torch import nn

from baselines import _online
from dsr.snn import models
from dsr.snn.layers import TBatchNorm, TimeSharedDropout
from dsr.snn.neuron import DSRNeuron, IFNeuron, LIFNeuron
from dsr.snn.phase import Phase, PhaseAware, phase, set_phase

T = 2
NEURONS = {"IF": lambda: IFNeuron(T), "LIF": lambda: LIFNeuron(T), "ReLU": models.ReLU,
           "online": lambda: _online.OnlineNeuron(T, neuron.LIFNode(step_mode="s"))}
PHASE_AWARE = (models.SpikingNet, TBatchNorm, TimeSharedDropout, DSRNeuron)


def small(name: str, neuron) -> models.SpikingNet:
    return models.create(name, neuron, base_width=2, dropout=0.1, input_size=32)


@pytest.mark.parametrize("module", [TBatchNorm(3), TimeSharedDropout(0.1), IFNeuron(T),
                                    LIFNeuron(T), small("preact_resnet8", models.ReLU)],
                         ids=lambda m: type(m).__name__)
def test_the_setter_refuses_an_invalid_phase_in_one_line(module: nn.Module) -> None:
    assert isinstance(module, PhaseAware) and module.phase is Phase.SPIKE
    with pytest.raises(ValueError) as err:
        module.phase = "backward"
    assert str(err.value) == ("phase must be one of 'spike', 'record', 'represent', got "
                              "'backward'")
    with pytest.raises(ValueError, match="got None$"):
        module.phase = None
    assert module.phase is Phase.SPIKE  # unchanged
    module.phase = "record"  # a Phase's name is accepted and stored as the Phase
    assert module.phase is Phase.RECORD
    module.phase = Phase.SPIKE
    assert "phase" not in str(module) and "_phase" not in module.state_dict()


def test_an_invalid_phase_sets_nothing() -> None:
    model = small("preact_resnet8", NEURONS["IF"])
    with pytest.raises(ValueError, match="phase must be one of"):
        set_phase(model, "Represent")
    with pytest.raises(ValueError, match="phase must be one of"), phase(model, "bogus"):
        pass
    assert all(m.phase is Phase.SPIKE for m in model.modules() if isinstance(m, PhaseAware))


@pytest.mark.parametrize("kind", sorted(NEURONS))
@pytest.mark.parametrize("name", models.names())
def test_set_phase_reaches_every_phase_aware_module_and_nothing_else(name: str, kind: str) -> None:
    model = small(name, NEURONS[kind])
    keys = list(model.state_dict())
    want = [m for m in model.modules() if isinstance(m, PHASE_AWARE)]
    assert [type(m) for m in want].count(TimeSharedDropout) > 0
    assert all(isinstance(m, PhaseAware) for m in want)
    if kind in ("IF", "LIF"):
        assert sum(isinstance(m, DSRNeuron) for m in want) == len(model.neurons())
    with phase(model, Phase.RECORD):
        for m in model.modules():
            assert (getattr(m, "phase", None) is Phase.RECORD) == (m in want), type(m).__name__
    assert all(m.phase is Phase.SPIKE for m in want)
    assert set_phase(model, "represent") == want
    assert all(m.phase is Phase.REPRESENT for m in want)
    assert not any(hasattr(m, "phase") for m in model.modules() if m not in want)
    assert list(model.state_dict()) == keys


def test_online_steps_use_the_protocol_on_dropout_only() -> None:
    model = small("preact_resnet8", NEURONS["online"]).train()
    drops = [m for m in model.modules() if isinstance(m, TimeSharedDropout)]
    with _online.online_steps(model):
        for m in model.modules():
            want = Phase.REPRESENT if isinstance(m, TimeSharedDropout) else Phase.SPIKE
            assert getattr(m, "phase", Phase.SPIKE) is want
        model(torch.randn(4, 3, 16, 16))
        masks = [d._mask for d in drops]
        model(torch.randn(4, 3, 16, 16))  # the second step keeps the first step's masks
        assert all(d._mask is mask for d, mask in zip(drops, masks, strict=True))
    assert all(d.phase is Phase.SPIKE and d._mask is None for d in drops)
