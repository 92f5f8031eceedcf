"""Metrics cross-checks: SynOps against NeuroBench, fvcore and hand counts; firing rates against
direct counts of the spike tensors; latency and memory types."""

import functools
import types

import jsonschema
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsr import REPO_ROOT
from dsr.harness import cost
from dsr.harness import metrics as M
from dsr.harness.evaluate import evaluate
from dsr.snn import models
from dsr.snn.layers import SeqWrap, TBatchNorm, flatten, linear
from dsr.snn.neuron import IFNeuron, LIFNeuron


class Replay(nn.Module):
    """A spiking layer that emits a fixed spike tensor [T, B, ...] whatever its input."""

    is_neuron_layer = True

    def __init__(self, o: Tensor):
        super().__init__()
        self.o = o

    def forward(self, x: Tensor) -> Tensor:
        return self.o.clone()


def count(net: nn.Module, spiking: list[nn.Module], x: Tensor, batch: int) -> dict:
    counter = M.SynOpsCounter(net, spiking)
    with counter.attach(), torch.no_grad():
        net(x)
    return counter.report(batch)


def by_name(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["per_layer"]}


def neurobench_synops(net: nn.Module, x: Tensor, batch: int) -> dict:
    """NeuroBench 2.3.0 SynapticOperations on one forward of `net` (any input layout).

    NeuroBench hooks every nn.Conv/nn.Linear, binarises each input (non-zero -> 1) and the
    weights, and runs the binary layer with the bias zeroed: effective ops = sum over outputs
    of the non-zero inputs reaching them through non-zero weights. An input counts as ACs only
    if all its values are in {-1, 0, 1}, else as MACs. It divides by data[0].size(0), so it gets
    a batch-first placeholder of `batch` samples (our inputs are time-first).
    """
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    model = TorchModel(net)
    model.register_hooks()
    metric = SynapticOperations()
    with torch.no_grad():
        preds = model(x)
    result = metric(model, preds, (torch.zeros(batch), None))
    model.cleanup_hooks()
    return result


# ---- hand counts -------------------------------------------------------------------------------


class TwoLayer(nn.Module):
    """spike1 -> conv(1->2, 3x3, stride 2, pad 1) -> spike2 -> flatten -> linear(8->5)."""

    def __init__(self, s1: Tensor, s2: Tensor):
        super().__init__()
        self.spike1, self.spike2 = Replay(s1), Replay(s2)
        self.conv = SeqWrap(nn.Conv2d(1, 2, 3, stride=2, padding=1))
        self.flat, self.fc = flatten(), linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flat(self.spike2(self.conv(self.spike1(x))))).mean(0)


def test_two_layer_synops_equal_hand_count():
    T, B, amp = 2, 1, 2.5  # amplitude 2.5: a spike still costs one AC
    s1 = torch.zeros(T, B, 1, 4, 4)
    for t, i, j in [(0, 0, 0), (0, 1, 1), (1, 3, 2), (1, 1, 3)]:
        s1[t, 0, 0, i, j] = amp
    s2 = torch.zeros(T, B, 2, 2, 2)
    s2[0, 0, 0, 0, 1] = s2[0, 0, 1, 1, 1] = s2[1, 0, 1, 0, 0] = amp
    net = TwoLayer(s1, s2)
    rep = count(net, [net.spike1, net.spike2], torch.zeros(T, B, 1, 4, 4), B)
    # 3x3 kernel, stride 2, pad 1 on 4 rows: output row 0 covers rows {0, 1}, row 1 covers
    # {1, 2, 3}, so the rows are reached by 1, 2, 1, 1 outputs (same for columns) and a spike
    # at (i, j) reaches r[i] * r[j] positions x 2 output channels:
    # (0,0): 1*1, (1,1): 2*2, (3,2): 1*1, (1,3): 2*1 -> 8 positions x 2 channels = 16 ACs
    # 3 spikes into linear(8 -> 5) -> 15 ACs
    layers = by_name(rep)
    assert layers["conv.module"] == {"name": "conv.module", "kind": "AC", "ops": 16.0,
                                     "energy_pj": pytest.approx(16 * 0.9),
                                     "fan_in_source": "spike1", "spikes": 4.0}
    assert layers["fc.module"]["ops"] == 15.0 and layers["fc.module"]["fan_in_source"] == "spike2"
    assert rep["total_ac"] == 31.0 and rep["total_mac"] == 0.0
    assert rep["energy_pj"] == pytest.approx(31 * 0.9)


class PoolNet(nn.Module):
    def __init__(self, s: Tensor, pool: nn.Module):
        super().__init__()
        self.spike, self.pool = Replay(s), SeqWrap(pool)
        self.conv = SeqWrap(nn.Conv2d(1, 3, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(self.spike(x)))


def test_pooled_spikes_cost_the_folded_fan_out_by_hand():
    s = torch.zeros(1, 1, 1, 4, 4)
    for i, j in [(0, 0), (0, 1), (1, 1), (2, 3), (3, 0)]:
        s[0, 0, 0, i, j] = 1.0
    # AvgPool(2) -> 2x2 grid; a 3x3 pad-1 conv on 2x2 reaches all 4 outputs from every
    # position, so each of the 5 spikes costs 4 positions x 3 channels: 60 ACs. The pooled
    # input has only 3 non-zero cells (0.75, 0.25, 0.25): counting those would give 36.
    avg = PoolNet(s, nn.AvgPool2d(2))
    rec = by_name(count(avg, [avg.spike], torch.zeros(1, 1, 1, 4, 4), 1))["conv.module"]
    assert (rec["kind"], rec["ops"], rec["spikes"]) == ("AC", 60.0, 5.0)
    assert rec["fan_in_source"] == "spike"
    # global average pool (adaptive): a 1x1 grid; the 3x3 conv reaches 1 position x 3 channels
    gap = PoolNet(s, nn.AdaptiveAvgPool2d(1))
    assert by_name(count(gap, [gap.spike], torch.zeros(1), 1))["conv.module"]["ops"] == 15.0
    # max pooling passes one spike per window holding one: 3 windows x 4 x 3 = 36
    mx = PoolNet(s, nn.MaxPool2d(2))
    assert by_name(count(mx, [mx.spike], torch.zeros(1), 1))["conv.module"]["ops"] == 36.0


def test_analog_layers_cost_macs_by_hand():
    # a linear layer on analog input: 4 inputs x 3 outputs = 12 MACs per sample
    rep = count(SeqWrap(nn.Linear(4, 3)), [], torch.randn(1, 2, 4), 2)
    assert rep["per_layer"] == [{"name": "module", "kind": "MAC", "ops": 12.0,
                                 "energy_pj": pytest.approx(12 * 4.6), "fan_in_source": "input"}]
    # conv(1->2, 3x3, stride 2, pad 1) on 4x4: 2x2x2 outputs x 9 weights = 72 MACs per sample,
    # counted once for a [1, B] constant input and T times for a [T, B] sequence
    conv = SeqWrap(nn.Conv2d(1, 2, 3, stride=2, padding=1))
    assert count(conv, [], torch.randn(1, 2, 1, 4, 4), 2)["total_mac"] == 72.0
    assert count(conv, [], torch.randn(5, 2, 1, 4, 4), 2)["total_mac"] == 5 * 72.0


def test_spikes_combined_with_spikes_or_modified_in_place_are_analog():
    s = (torch.rand(2, 1, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc1, self.fc2 = Replay(s), Replay(s), linear(3, 2), linear(3, 2)

        def forward(self, x: Tensor) -> Tensor:
            y = self.fc1(self.a(x) + self.b(x))  # a sum of spike trains is not a spike train
            z = self.b(x)
            z.mul_(0.5).add_(1.0)  # in place: no longer the events it held
            return y + self.fc2(z)

    net = Net()
    rep = by_name(count(net, [net.a, net.b], torch.zeros(1), 1))
    assert rep["fc1.module"]["kind"] == rep["fc2.module"]["kind"] == "MAC"
    assert rep["fc1.module"]["fan_in_source"] == "analog"


# ---- NeuroBench cross-checks -------------------------------------------------------------------


class TinySNN(nn.Module):
    """Time-first: conv(2->4, 3x3, no padding) on analog input, conv(4->6, 3x3, stride 2, pad 1)
    and linear(54->5) on spikes. No padding on the analog layer, so NeuroBench's effective MACs
    (non-zero inputs only) equal the dense count when no input is exactly 0."""

    def __init__(self, neuron: models.NeuronFactory):
        super().__init__()
        self.conv0, self.bn0, self.n0 = SeqWrap(nn.Conv2d(2, 4, 3)), TBatchNorm(4), neuron()
        self.conv1 = SeqWrap(nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.bn1, self.n1 = TBatchNorm(6), neuron()
        self.flat, self.fc = flatten(), linear(54, 5)

    def forward(self, x: Tensor) -> Tensor:  # x [T, B, 2, 8, 8]
        s0 = self.n0(self.bn0(self.conv0(x)))  # [T, B, 4, 6, 6]
        s1 = self.n1(self.bn1(self.conv1(s0)))  # [T, B, 6, 3, 3]
        return self.fc(self.flat(s1)).mean(0)


class SJIF(nn.Module):
    """SpikingJelly's multi-step IF node (0/1 spikes) over T = 4 steps, reset on every call."""

    def __init__(self):
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.node = neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        self.node.reset()
        return self.node(x.expand(4, *x.shape[1:]) if x.shape[0] == 1 else x)


@pytest.mark.parametrize("neuron", [SJIF, functools.partial(IFNeuron, 4, v_th=1.0)],
                         ids=["spikingjelly-if", "dsr-if-vth1"])
def test_synops_equal_neurobench_on_binary_spikes(neuron, gen):
    net = TinySNN(neuron).eval()
    x = torch.randn(4, 3, 2, 8, 8, generator=gen)  # [T, B, ...]
    ours = count(net, [net.n0, net.n1], x, 3)
    nb = neurobench_synops(net, x, 3)
    assert ours["total_ac"] > 0 and nb["Effective_ACs"] > 0
    assert ours["total_ac"] == nb["Effective_ACs"]
    assert ours["total_mac"] == nb["Effective_MACs"] == 4 * (4 * 6 * 6) * (2 * 9)


def test_synops_equal_neurobench_on_preact_resnet_acs(gen):
    # the full architecture (1x1 stride-2 shortcuts, dropout, the head) with 0/1 spikes.
    # Only ACs compare: the stem pads its analog input, and NeuroBench skips the padded zeros
    # (effective MACs) where fvcore and we count the dense layer.
    net = models.create("preact_resnet8", functools.partial(IFNeuron, 4, v_th=1.0),
                        base_width=4, dropout=0.1).eval()
    x = torch.randn(3, 3, 16, 16, generator=gen)
    ours, nb = count(net, net.neurons(), x, 3), neurobench_synops(net, x, 3)
    assert ours["total_ac"] > 0
    assert ours["total_ac"] == nb["Effective_ACs"]
    assert 0 < nb["Effective_MACs"] < ours["total_mac"]


def test_scaled_spikes_cost_the_same_acs_as_unit_spikes(gen):
    # a DSR-IF net with v_th = 2.5 emits spikes of amplitude 2.5; replaying each layer's spike
    # pattern with amplitude 1 must give the same ACs, per layer. NeuroBench counts the
    # scaled inputs as MACs (values outside {-1, 0, 1}): the same events, labelled MACs.
    net = TinySNN(functools.partial(IFNeuron, 4, v_th=2.5)).eval()
    x = 3 * torch.randn(4, 3, 2, 8, 8, generator=gen)
    patterns = {}
    handles = [n.register_forward_hook(lambda m, i, o: patterns.__setitem__(m, o / 2.5))
               for n in (net.n0, net.n1)]
    scaled, nb_scaled = count(net, [net.n0, net.n1], x, 3), neurobench_synops(net, x, 3)
    for h in handles:
        h.remove()
    assert set(torch.cat([p.flatten() for p in patterns.values()]).tolist()) == {0.0, 1.0}
    handles = [n.register_forward_hook(lambda m, i, o: patterns[m]) for n in (net.n0, net.n1)]
    unit, nb_unit = count(net, [net.n0, net.n1], x, 3), neurobench_synops(net, x, 3)
    for h in handles:
        h.remove()
    assert scaled["total_ac"] > 0
    assert scaled["per_layer"] == unit["per_layer"]
    assert scaled["total_ac"] == unit["total_ac"] == nb_unit["Effective_ACs"]
    assert nb_scaled["Effective_ACs"] == 0
    assert nb_scaled["Effective_MACs"] == nb_unit["Effective_MACs"] + nb_unit["Effective_ACs"]


# ---- architectures -----------------------------------------------------------------------------


def test_resnet_layers_read_the_spikes_the_official_block_wires():
    net = models.create("preact_resnet8", functools.partial(IFNeuron, 2, v_th=1.0), base_width=4)
    rep = by_name(count(net.eval(), net.neurons(), torch.randn(2, 3, 16, 16), 2))
    stem = rep["stem.0.module"]
    assert stem["kind"] == "MAC" and stem["fan_in_source"] == "input"
    assert rep["stages.1.conv1.module"]["fan_in_source"] == "stages.1.n1"
    assert rep["stages.1.shortcut.module"]["fan_in_source"] == "stages.1.n1"
    assert rep["stages.1.conv2.module"]["fan_in_source"] == "stages.1.n2"
    assert rep["fc.module"]["fan_in_source"] == "n_pool"
    assert all(r["kind"] == "AC" for n, r in rep.items() if n != "stem.0.module")


def test_vgg_pooled_conv_equals_the_folded_operator_count(gen):
    # AvgPool(2) then conv 3x3 pad 1 equals one conv 6x6, stride 2, pad 2 on the unpooled
    # grid; its binary version on the spike mask counts every (spike, target) pair
    T, B = 3, 2
    net = models.create("vgg11", functools.partial(LIFNeuron, T), base_width=8, input_size=32,
                        in_channels=2).eval()
    spikes = {}
    net.features[2].register_forward_hook(lambda m, i, o: spikes.__setitem__("s", o))
    rep = by_name(count(net, net.neurons(), torch.rand(T, B, 2, 32, 32, generator=gen), B))
    conv = net.features[5].module
    mask = (spikes["s"] != 0).float().flatten(0, 1)  # [T*B, 8, 32, 32]
    ones = torch.ones(conv.out_channels, conv.in_channels, 6, 6)
    expected = float(F.conv2d(mask, ones, stride=2, padding=2).sum()) / B
    rec = rep["features.5.module"]
    assert rec["fan_in_source"] == "features.2" and rec["kind"] == "AC"
    assert rec["ops"] == pytest.approx(expected, rel=1e-12) and expected > 0
    assert rep["features.0.module"]["kind"] == "MAC"
    assert rep["features.0.module"]["ops"] == T * (8 * 32 * 32) * (2 * 9)  # event input: T runs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_synops_on_cuda_equal_cpu(gen):
    net = models.create("vgg11", functools.partial(IFNeuron, 3, v_th=1.0), base_width=8,
                        input_size=32, in_channels=2).eval()
    x = torch.rand(3, 2, 2, 32, 32, generator=gen)
    cpu = count(net, net.neurons(), x, 2)
    gpu = count(net.cuda(), net.neurons(), x.cuda(), 2)
    assert gpu["total_mac"] == cpu["total_mac"]
    assert gpu["total_ac"] == pytest.approx(cpu["total_ac"], rel=1e-3)  # TF32/cuDNN rounding


def test_ann_macs_equal_fvcore_flops(gen):
    from fvcore.nn import FlopCountAnalysis

    ann = models.create("preact_resnet20", models.ReLU, base_width=4).eval()
    x = torch.randn(2, 3, 32, 32, generator=gen)
    rep = count(ann, [], x, 2)
    fa = FlopCountAnalysis(ann, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    flops = fa.by_module()
    synaptic = [n for n, m in ann.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [r["name"] for r in rep["per_layer"]] == synaptic  # forward order
    for r in rep["per_layer"]:
        assert r["kind"] == "MAC"
        assert r["ops"] * 2 == flops[r["name"]]
    ops = fa.by_operator()
    assert rep["total_mac"] * 2 == ops["conv"] + ops["linear"]
    assert rep["total_ac"] == 0
    # the SNN on static images runs the stem once: the ANN twin's stem count
    snn = models.create("preact_resnet20", functools.partial(IFNeuron, 4), base_width=4).eval()
    stem = by_name(count(snn, snn.neurons(), x, 2))["stem.0.module"]
    assert stem["kind"] == "MAC" and stem["ops"] * 2 == flops["stem.0.module"]


# ---- the harness entry point -------------------------------------------------------------------


class FakeData:
    def __init__(self, x: Tensor):
        self.x = x

    def batches(self, split: str, batch_size: int, device=None):
        assert split == "test"
        for i in range(0, len(self.x), batch_size):
            yield self.x[i:i + batch_size], torch.zeros(len(self.x[i:i + batch_size]))


def test_synops_averages_over_the_whole_test_set_and_fits_the_schema(gen):
    import json

    net = models.create("preact_resnet8", functools.partial(IFNeuron, 3, v_th=1.0), base_width=4)
    method = types.SimpleNamespace(logits=lambda n, x: n(x))
    cfg = types.SimpleNamespace(train=types.SimpleNamespace(eval_batch_size=3, pj_per_ac=1.0,
                                                            pj_per_mac=2.0))
    x = torch.randn(5, 3, 16, 16, generator=gen)
    rep = evaluate(net.eval(), net.neurons(), method, FakeData(x), cfg, torch.device("cpu"),
                   synops=True).synops  # the harness's own pass
    whole = count(net, net.neurons(), x, 5)  # one batch of 5 (BN in eval: samples independent)
    assert rep["samples"] == 5
    assert rep["total_ac"] == pytest.approx(whole["total_ac"], rel=1e-12)
    assert rep["total_mac"] == whole["total_mac"]
    assert rep["energy_pj"] == pytest.approx(rep["total_ac"] + 2 * rep["total_mac"])
    schema = json.loads((REPO_ROOT / "dsr/schemas/metrics.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(rep)), schema["properties"]["synops"])


def test_bad_arguments_raise_clear_errors():
    net = TwoLayer(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="not submodules"):
        M.SynOpsCounter(net, [IFNeuron(2)])
    with pytest.raises(ValueError, match="at least one"):
        M.SynOpsCounter(net, []).report(0)
    with pytest.raises(ValueError, match=">= 0"):
        M.SynOpsCounter(net, []).report(1, pj_per_ac=-1.0)


# ---- firing rates, latency, memory -------------------------------------------------------------


@pytest.mark.parametrize("neuron", [functools.partial(IFNeuron, 4, v_th=1.0),
                                    functools.partial(LIFNeuron, 4, v_th=0.3, dt=0.05), SJIF],
                         ids=["dsr-if", "dsr-lif", "spikingjelly-if"])
def test_firing_rates_equal_a_direct_count(neuron, gen):
    net = models.create("preact_resnet8", neuron, base_width=4).eval()
    outputs: dict[int, list[Tensor]] = {i: [] for i in range(len(net.neurons()))}
    for i, n in enumerate(net.neurons()):
        n.register_forward_hook(lambda m, inp, o, i=i: outputs[i].append(o.clone()))
    counter = M.SpikeCounter(net.neurons())
    x = torch.randn(2, 3, 3, 16, 16, generator=gen)
    with counter.attach(), torch.no_grad():
        for batch in x:  # two batches of 3 static images
            net(batch)
    assert all(o.shape[0] == 4 for outs in outputs.values() for o in outs)  # [T, B, ...], also
    # the first neuron, fed a [1, B, ...] constant current
    spikes = [sum(int((o != 0).sum()) for o in outputs[i]) for i in outputs]
    slots = [sum(o.numel() for o in outputs[i]) for i in outputs]
    assert counter.per_layer() == [s / n for s, n in zip(spikes, slots, strict=True)]
    assert counter.total() == sum(spikes) / sum(slots) and 0 < counter.total() < 1


def test_latency_and_peak_memory_are_sane():
    net = models.create("preact_resnet8", functools.partial(IFNeuron, 2), base_width=4).eval()
    ms = cost.latency_ms(net, torch.randn(2, 3, 16, 16), repeats=2)
    assert isinstance(ms, float) and ms > 0
    assert cost.latency_ms(net, torch.randn(2, 1, 3, 16, 16), repeats=1) > 0  # [T, B, ...] input
    both = cost.measure_latency(net, torch.randn(1, 3, 3, 16, 16), repeats=1)
    assert list(both) == ["batch_1", "batch_3"] and all(v > 0 for v in both.values())
    peak, kind = cost.peak_memory(torch.device("cpu"))
    assert isinstance(peak, int) and peak > 2**20 and kind == "cpu_peak_rss"
