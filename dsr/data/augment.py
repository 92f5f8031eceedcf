"""Batch augmentation on stored units: random crop of a zero-padded copy, horizontal flip.

Applied to a whole batch at once on its device; the offsets and flips are drawn for the global
batch from the batch plan's generator, so rank r's slice matches the one-process batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(x: Tensor, pad: int, dy: Tensor, dx: Tensor) -> Tensor:
    """Crop sample b of x [B, ..., H, W] at (dy[b], dx[b]) of its zero-padded copy (same size)."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    xp = F.pad(x.reshape(B, -1, H, W), (pad, pad, pad, pad))  # [B, K, H + 2p, W + 2p]
    K = xp.shape[1]
    rows = dy[:, None] + torch.arange(H, device=x.device)  # [B, H]
    cols = dx[:, None] + torch.arange(W, device=x.device)  # [B, W]
    xp = xp.gather(2, rows[:, None, :, None].expand(B, K, H, W + 2 * pad))
    xp = xp.gather(3, cols[:, None, None, :].expand(B, K, H, W))
    return xp.reshape(x.shape)


def random_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror sample b of x [B, ..., W] horizontally where flip[b]."""
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


def draw(gen: torch.Generator, m: int, pad: int, flip: bool) -> dict[str, Tensor]:
    """The random choices of one global batch of m samples: crop offsets (when pad) and flips
    (when flip). A resumed epoch draws them for the batches it skips, so the generator reaches
    the next batch in the state an uninterrupted epoch would have."""
    draws = {}
    if pad:
        draws["dy"] = torch.randint(0, 2 * pad + 1, (m,), generator=gen)
        draws["dx"] = torch.randint(0, 2 * pad + 1, (m,), generator=gen)
    if flip:
        draws["flip"] = torch.rand(m, generator=gen) < 0.5
    return draws


def crop_and_flip(
    x: Tensor, gen: torch.Generator, m: int, mine: slice, pad: int, flip: bool
) -> Tensor:
    """Augment x, the slice `mine` of a global batch of m samples: a crop of its pad-zero-padded
    copy when pad, a flip with probability 1/2 when flip, both drawn for all m samples."""
    draws = {k: v[mine].to(x.device) for k, v in draw(gen, m, pad, flip).items()}
    if pad:
        x = random_crop(x, pad, draws["dy"], draws["dx"])
    if flip:
        x = random_flip(x, draws["flip"])
    return x
