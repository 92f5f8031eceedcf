"""Analyses beside the training-step benchmark (`python -m bench.train_step --cosine / --phases`):
the fast and approx modes' gradients against exact mode's, and where a fast step's time goes."""

from __future__ import annotations

import functools
import statistics
import time

# ---- fast vs exact gradient agreement (issue 2: cosine similarity in BN training mode) ---------


def gradient_cosine(arch: str = "preact_resnet20", base_width: int = 8, T: int = 5,
                    batch: int = 16, seed: int = 0) -> list[dict]:
    """Cosine similarity of the fast- and approx-mode gradients with exact mode's, IF and LIF,
    BN train and eval, float64 (fast: 1 to rounding everywhere; approx: see BENCHMARKS.md)."""
    import torch
    import torch.nn.functional as F

    from dsr.snn import models
    from dsr.snn.layers import fast_forward
    from dsr.snn.neuron import IFNeuron, LIFNeuron

    neurons = {"IF": functools.partial(IFNeuron, T, v_th=1.0, lower_bound=0.01),
               "LIF": functools.partial(LIFNeuron, T, v_th=0.3, lower_bound=0.0005, dt=0.05,
                                        alpha=0.3)}
    rows = []
    for name, factory in neurons.items():
        for bn_mode in ("train", "eval"):
            torch.manual_seed(seed)
            model = models.create(arch, factory, num_classes=10, base_width=base_width).double()
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, 3, 32, 32, generator=gen, dtype=torch.float64)
            y = torch.randint(0, 10, (batch,), generator=gen)
            if bn_mode == "eval":  # non-trivial running statistics first
                with torch.no_grad():
                    model.train()
                    model(x)
                model.eval()
            else:
                model.train()
            grads = {}
            for mode in ("exact", "fast", "approx"):
                model.zero_grad(set_to_none=True)
                state = {k: v.clone() for k, v in model.state_dict().items()}
                out = model(x) if mode == "exact" else fast_forward(model, x, mode == "fast")
                F.cross_entropy(out, y).backward()
                grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters()
                               if p.grad is not None}
                model.load_state_dict(state)  # same running statistics for every mode
            for mode in ("fast", "approx"):
                cosines = _cosines(grads["exact"], grads[mode])
                rows.append({"mode": mode, "neuron": name, "bn_mode": bn_mode, **cosines})
    return rows


def _cosines(a: dict, b: dict) -> dict:
    """Cosine per parameter group and the largest relative error; parameters whose exact
    gradient is ~0 (conv biases in front of a BN, thresholds that never see I above v_th) are
    rounding noise and left out."""
    import torch

    scale = max(float(g.abs().max()) for g in a.values())
    keys = sorted(k for k in a if float(a[k].abs().max()) > 1e-9 * scale)

    def cos(ks: list[str]) -> float:
        u = torch.cat([a[k].flatten() for k in ks])
        v = torch.cat([b[k].flatten() for k in ks])
        return float(torch.nn.functional.cosine_similarity(u, v, dim=0))

    groups = {"all": keys,
              "weights": [k for k in keys if a[k].dim() > 1],
              "v_th": [k for k in keys if k.endswith("v_th")],
              "bn_affine": [k for k in keys if a[k].dim() == 1]}
    out: dict = {g: cos(ks) if ks else "n/a" for g, ks in groups.items()}
    out["min_layer"], out["min_layer_name"] = min((cos([k]), k) for k in keys if a[k].dim() > 0)
    out["max_rel_err"] = max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in keys)
    return out


# ---- where a fast step's time goes ------------------------------------------------------------


def fast_phases(arch: str, T: int, batch: int = 32, repeats: int = 3, top: int = 8,
                coupling: bool = True, v_th: float = 1.0) -> str:
    """Median seconds of a fast (coupling=False: approx) step's phases, then the record pass's
    costliest ops."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from dsr.snn import models
    from dsr.snn.layers import phase, record_pass
    from dsr.snn.neuron import IFNeuron

    torch.manual_seed(0)
    model = models.create(arch, functools.partial(IFNeuron, T, v_th=v_th, lower_bound=0.01),
                          num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times: dict[str, list[float]] = {"record": [], "represent": [], "backward": [], "sgd": []}
    for i in range(repeats + 1):  # the first is warm-up
        t = [time.perf_counter()]
        record_pass(model, x, coupling)
        t.append(time.perf_counter())
        with phase(model, "represent"):
            loss = F.cross_entropy(model(x), y)
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        if i:
            for k, a, b in zip(times, t, t[1:], strict=False):
                times[k].append(b - a)
    mode = "fast" if coupling else "approx"
    lines = [f"{mode}-mode phases, {arch} T={T} batch {batch} (median s): " + ", ".join(
        f"{k} {statistics.median(v):.3f}" for k, v in times.items())]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        record_pass(model, x, coupling)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    lines += [f"  record pass {e.key:<28} {e.self_cpu_time_total / 1e3:8.0f} ms "
              f"{100 * e.self_cpu_time_total / total:5.1f} %" for e in events[:top]]
    return "\n".join(lines)

