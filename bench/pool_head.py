"""Why QCFS and the surrogate-gradient baselines drop the DSR head's post-pool neuron.

    python -m bench.pool_head [--batches 4]

One forward/backward at initialisation on real CIFAR-10 training batches (PreAct-ResNet-20), for
QCFS and TET (T = 2) each built with and without the neuron after the global average pool, and
the ReLU ANN as reference: the logits' std, the fraction of FC inputs that are zero, and the stem
gradient norm relative to the ANN's. Needs the JPEG copy at ../shared/data (extracted once into
data/cifar10/); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.real_data import real_cifar10
from dsr import REPO_ROOT, registry
from dsr.config import RunConfig, train_config
from dsr.data import load

ARCH = "preact_resnet20"


def probe(key: str, T: int, pool_neuron: bool, batches: list) -> tuple[float, float, float]:
    """(logit std, zero fraction of FC inputs, stem gradient norm), averaged over batches."""
    cls = registry.get(key)
    cfg = RunConfig(key, "cifar10", ARCH, T, 0, cls.modes[0], train_config("cifar10", T, {}),
                    cls.default_params(T, "cifar10"))
    variant = type(cls.__name__, (cls,), {"pool_neuron": pool_neuron})  # same method, that head
    method = variant(cfg)
    torch.manual_seed(0)
    net = method.build(ARCH, load("cifar10", REPO_ROOT / "data" / "cifar10").info).train()
    fc_in: list[torch.Tensor] = []
    net.fc.register_forward_hook(lambda m, inp, out: fc_in.append(inp[0].detach()))
    std = zero = grad = 0.0
    for x, y in batches:
        net.zero_grad()
        out = method.train_outputs(method.training_module(net), x)
        method.loss(out, y).backward()
        logits = (out.mean(0) if out.dim() == 3 else out).detach()
        std += float(logits.std()) / len(batches)
        zero += float((fc_in[-1] == 0).float().mean()) / len(batches)
        grad += float(net.stem[0].module.weight.grad.norm()) / len(batches)
    return std, zero, grad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=4)
    args = p.parse_args(argv)
    root = real_cifar10()
    if root is None:
        return 0
    data = load("cifar10", root)
    gen = data.batches("train", 64, epoch=0, seed=0)
    batches = [next(gen) for _ in range(args.batches)]
    _, _, ann_grad = probe("ann", 1, True, batches)
    print(f"{'method':6s} {'T':>2s} {'pool neuron':>11s} {'logit std':>9s} {'FC in = 0':>9s} "
          f"{'stem grad / ANN':>15s}")
    for key, T in (("qcfs", 4), ("tet", 2)):
        for pool in (True, False):
            std, zero, grad = probe(key, T, pool, batches)
            print(f"{key:6s} {T:2d} {str(pool):>11s} {std:9.3f} {zero:9.2f} "
                  f"{grad / ann_grad:15.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
