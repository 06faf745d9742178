"""The generator's conditioning, computed before the U-Net body runs.

Every res block is conditioned on the step t (a per-channel bias projected from
the step embedding) and on the latent z (the scale and shift of its two AdaGNs,
projected from the z embedding). None of it depends on the feature maps, so
the generator computes all of it first (`conditioning(t, z)`) and each block of
the body reads its share (`cond[block]`).

The split is what lets the sampler condition all T steps in one pass (their z
are drawn before the first step): each projection then reads its weights once
per batch instead of once per step. On a 2-core CPU those projections took 16%
of cifar10 sampling at batch 1 (bf16); conditioning the T steps together made
it 1.18x faster, with the same images bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


def _chunk(x: torch.Tensor | None, n: int) -> list[torch.Tensor | None]:
    if x is None:
        return [None] * n
    if x.shape[0] % n:
        raise ValueError(f"cannot split a conditioning batch of {x.shape[0]} into {n} equal parts")
    return list(x.chunk(n))


@dataclass(frozen=True)
class BlockConditioning:
    """One res block's share, fp32: its time bias [B, C_out] (None when the generator ignores t) and
    the scale-and-shift of its input and output AdaGNs, [B, 2 C_in] and [B, 2 C_out]."""

    bias: torch.Tensor | None
    style_in: torch.Tensor
    style_out: torch.Tensor

    def chunk(self, n: int) -> list[BlockConditioning]:
        parts = zip(_chunk(self.bias, n), _chunk(self.style_in, n), _chunk(self.style_out, n))
        return [BlockConditioning(*p) for p in parts]


class Conditioning:
    """The conditioning of one generator call: each res block's `BlockConditioning`, looked up by block."""

    def __init__(self, blocks: dict[nn.Module, BlockConditioning]):
        self.blocks = blocks

    def __getitem__(self, block: nn.Module) -> BlockConditioning:
        return self.blocks[block]

    def chunk(self, n: int) -> list[Conditioning]:
        """Split the batch into n equal parts, in order (the sampler's T steps, conditioned together)."""
        parts = {block: c.chunk(n) for block, c in self.blocks.items()}
        return [Conditioning({block: p[i] for block, p in parts.items()}) for i in range(n)]
