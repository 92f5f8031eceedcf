"""The paper's architectures, built from a neuron factory, time-first [T, B, ...] throughout.

- PreAct-ResNet-18 (supplement C.3, official code): avg pooling, the block's spikes (not its input)
  on the shortcut, 1x1 conv shortcut without BN, head BN -> neuron -> avg pool -> neuron ->
  linear -> BN1d -> neuron (19 neuron layers). `stem="imagenet"`: 7x7/2 conv + 3x3/2 avg pool.
- PreAct-ResNet-20/32/44/56/110 (Table S1): conv(3x3,16), stages 16/32/64 of n = 3/5/7/9/18
  blocks, the same head. `preact_resnet8` (n = 1) is the small model for the digits default.
- VGG-11 (DVS-CIFAR10): conv-BN-neuron-dropout(0.1) blocks, M = AvgPool(2), one FC, BN1d, neuron.
A `neuron` factory returns a module [T, B, ...] -> [T, B, ...]; with `nn.ReLU`-like factories the
same code builds the ANN twin (same parameter names, so ANN weights load into the SNN).
Static images enter as [B, C, H, W]: the first layer runs once and the first neuron repeats its
constant current over T steps (`steps`, for neurons that need all T inputs). Event data enters
as [T, B, C, H, W].
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dsr.snn.layers import (
    TBatchNorm,
    TimeSharedDropout,
    avg_pool,
    conv,
    flatten,
    global_avg_pool,
    linear,
)
from dsr.snn.phase import Phase, PhaseAware

NeuronFactory = Callable[[], nn.Module]


class SpikingNet(PhaseAware, nn.Module):
    """Base: input handling, the list of neuron layers, and the readout of the output layer."""

    static_input_dims = 4  # [B, C, H, W]; one more dim means a [T, B, ...] sequence

    def neurons(self) -> list[nn.Module]:
        """Activation/neuron layers in forward order (Fig. S1's layer index 1..L)."""
        return [m for m in self.modules() if getattr(m, "is_neuron_layer", False)]

    def _input(self, x: Tensor) -> Tensor:
        if x.dim() == self.static_input_dims:
            # [1, B, C, H, W]: constant current, run through the stem once (the official code
            # repeats it T times: same outputs and gradients, but the first BN's running
            # variance takes the unbiased count of B*H*W samples, not T*B*H*W; README)
            return x.unsqueeze(0)
        if self.phase is Phase.REPRESENT:
            return x.mean(0, keepdim=True)  # the first layer is linear: conv(mean) = mean(conv)
        return x  # [T, B, C, H, W]

    def sequence(self, x: Tensor) -> Tensor:
        """Output-layer sequence [T, B, K] (or [1, B, K] for a network with no neuron)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits [B, K]: the output neuron's representation, else the time-mean of the FC."""
        seq = self.sequence(x)
        if self.output_neuron is not None and hasattr(self.output_neuron, "readout"):
            return self.output_neuron.readout(seq)
        return seq.mean(0)


def tag(module: nn.Module) -> nn.Module:
    """Mark a factory's module as a neuron layer (for metrics, Fig. S1 and the readout)."""
    module.is_neuron_layer = True
    return module


def steps(x: Tensor, T: int, who: str) -> Tensor:
    """x [1 or T, B, ...] -> [T, B, ...]: a time length of 1 is a constant input over T steps."""
    if x.shape[0] == 1:
        return x.expand(T, *x.shape[1:])
    if x.shape[0] != T:
        raise ValueError(f"{who} expects {T} time steps (or 1), got {x.shape[0]}")
    return x


class PreActBlock(nn.Module):
    """Official DSR block: s = n1(bn1(x)); out = conv2(drop(n2(bn2(conv1(s))))) + shortcut(s)."""

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory, dropout: float):
        super().__init__()
        self.bn1, self.n1 = TBatchNorm(cin), tag(neuron())
        self.conv1 = conv(cin, cout, 3, stride)
        self.bn2, self.n2 = TBatchNorm(cout), tag(neuron())
        self.drop = TimeSharedDropout(dropout)
        self.conv2 = conv(cout, cout, 3)
        self.shortcut = conv(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        s = self.n1(self.bn1(x))  # [T, B, cin, H, W] spikes
        out = self.conv2(self.drop(self.n2(self.bn2(self.conv1(s)))))
        return out + self.shortcut(s)


class PreActResNet(SpikingNet):
    def __init__(
        self,
        blocks: list[int],
        widths: list[int],
        neuron: NeuronFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        stem: str = "cifar",
        dropout: float = 0.0,
        output_neuron: bool = True,
        pool_neuron: bool = True,
    ):
        super().__init__()
        if stem == "cifar":
            self.stem = nn.Sequential(conv(in_channels, widths[0], 3, bias=False))
        elif stem == "imagenet":
            self.stem = nn.Sequential(conv(in_channels, widths[0], 7, stride=2, bias=False),
                                      avg_pool(3, 2, 1))
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                layers.append(PreActBlock(cin, w, 2 if (i > 0 and j == 0) else 1, neuron, dropout))
                cin = w
        self.stages = nn.Sequential(*layers)
        self.bn, self.n_pre = TBatchNorm(cin), tag(neuron())
        # the official DSR head has a neuron after the average pool; pool_neuron=False drops it
        self.pool = global_avg_pool()
        self.n_pool = tag(neuron()) if pool_neuron else nn.Identity()
        self.flat, self.drop = flatten(), TimeSharedDropout(dropout)
        self.fc = linear(cin, num_classes)
        if output_neuron:
            self.bn_out, self.n_out = TBatchNorm(num_classes), tag(neuron())
        self.output_neuron = self.n_out if output_neuron else None
        _init(self)

    def sequence(self, x: Tensor) -> Tensor:
        out = self.stages(self.stem(self._input(x)))
        out = self.n_pool(self.pool(self.n_pre(self.bn(out))))
        out = self.fc(self.drop(self.flat(out)))
        return self.n_out(self.bn_out(out)) if self.output_neuron is not None else out


class VGG(SpikingNet):
    def __init__(
        self,
        cfg: list[int | str],
        neuron: NeuronFactory,
        num_classes: int = 10,
        in_channels: int = 2,
        input_size: int = 48,
        dropout: float = 0.1,
        output_neuron: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = in_channels, input_size
        for c in cfg:
            if c == "M":
                layers.append(avg_pool(2))
                size //= 2
            else:
                layers += [conv(cin, int(c), 3), TBatchNorm(int(c)), tag(neuron()),
                           TimeSharedDropout(dropout)]
                cin = int(c)
        self.features = nn.Sequential(*layers)
        self.flat, self.fc = flatten(), linear(cin * size * size, num_classes)
        if output_neuron:
            self.bn_out, self.n_out = TBatchNorm(num_classes), tag(neuron())
        self.output_neuron = self.n_out if output_neuron else None
        _init(self)

    def sequence(self, x: Tensor) -> Tensor:
        out = self.fc(self.flat(self.features(self._input(x))))
        return self.n_out(self.bn_out(out)) if self.output_neuron is not None else out


def _init(model: nn.Module) -> None:
    # official code: Kaiming-normal (fan_out) convs, BN gamma 1 / beta 0, zero linear bias
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


# ---- registry ----------------------------------------------------------------------------------

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def _resnet_cifar(n: int) -> Callable[..., SpikingNet]:
    def build(neuron: NeuronFactory, base_width: int | None = None, **kw) -> SpikingNet:
        w = 16 if base_width is None else base_width
        return PreActResNet([n] * 3, [w, 2 * w, 4 * w], neuron, **kw)

    return build


def _resnet18(neuron: NeuronFactory, base_width: int | None = None, **kw) -> SpikingNet:
    w = 64 if base_width is None else base_width
    return PreActResNet([2, 2, 2, 2], [w * m for m in (1, 2, 4, 8)], neuron, **kw)


def _vgg11(neuron: NeuronFactory, base_width: int | None = None, **kw) -> SpikingNet:
    w = 64 if base_width is None else base_width
    return VGG([c if c == "M" else int(c) * w // 64 for c in VGG11], neuron, **kw)


# name -> (the class the builder makes, the builder); base_width None: the architecture's own
_REGISTRY: dict[str, tuple[type[SpikingNet], Callable[..., SpikingNet]]] = {
    "preact_resnet8": (PreActResNet, _resnet_cifar(1)),
    "preact_resnet18": (PreActResNet, _resnet18),
    "preact_resnet20": (PreActResNet, _resnet_cifar(3)),
    "preact_resnet32": (PreActResNet, _resnet_cifar(5)),
    "preact_resnet44": (PreActResNet, _resnet_cifar(7)),
    "preact_resnet56": (PreActResNet, _resnet_cifar(9)),
    "preact_resnet110": (PreActResNet, _resnet_cifar(18)),
    "vgg11": (VGG, _vgg11),
}


def _options(cls: type[SpikingNet]) -> frozenset[str]:
    """The keyword options architecture class `cls` understands (its defaulted arguments)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return frozenset(p.name for p in params if p.default is not inspect.Parameter.empty)


OPTIONS = frozenset({"base_width"}).union(*(_options(cls) for cls, _ in _REGISTRY.values()))


def names() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, neuron: NeuronFactory, **options) -> SpikingNet:
    """Build architecture `name` with layers from `neuron()`.

    `options` may name any of OPTIONS (num_classes, in_channels, base_width, dropout,
    output_neuron, stem, pool_neuron, input_size); each architecture takes the ones it understands
    (stem and pool_neuron: ResNets; input_size: VGG) and ignores the rest, so a caller passes
    everything it knows without asking which architecture it builds.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(names())}")
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ValueError(f"unknown architecture option(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(OPTIONS))}")
    cls, build = _REGISTRY[name]
    own = _options(cls) | {"base_width"}
    return build(neuron, **{k: v for k, v in options.items() if k in own})


class ReLU(nn.Module):
    """The ANN twin's activation: ReLU on [T, B, ...] (T = 1 for static input)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)


def load_ann_weights(snn: nn.Module, ann_state: dict[str, Tensor]) -> None:
    """Load an ANN twin's weights into an SNN of the same architecture (thresholds excepted)."""
    own = snn.state_dict()
    bad = sorted(set(ann_state).symmetric_difference(k for k in own if not k.endswith("v_th")))
    bad += [k for k in ann_state if k in own and own[k].shape != ann_state[k].shape]
    if bad:
        raise ValueError(f"ANN and SNN architectures differ at {bad[:5]}: build both with the "
                         "same architecture name and kwargs")
    snn.load_state_dict(ann_state, strict=False)
