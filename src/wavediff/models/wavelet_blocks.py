"""The wavelet parts of WaveDiff's generator (paper, Sec. 3.2 and Fig. 3).

* `WaveletInputPyramid` (a.k.a. `WaveletDownsample`): the input pyramid takes
  the Haar transform of the previous pyramid level, all four sub-bands, and
  projects them with a 3x3 convolution.
* `WaveletDownBlock`: a frequency-aware res block that halves the resolution
  by keeping the low band of both paths; the main path's high bands are
  returned as a skip for the matching `WaveletUpBlock`.
* `WaveletUpBlock`: doubles the resolution with an inverse Haar transform whose
  high bands come from the skip (refined by a grouped convolution).
* `FrequencyBottleneck`: the middle of the U-Net, whose res blocks also run on
  the low band only.

Inside the network the high bands travel in the order of the authors' DWT_2D
(LH, HL, HH) = (Q, P, HH) in our naming, because the released weights
(the grouped convolution of the up blocks, the pyramid's input channels)
were learned in that order.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..wavelets import dwt, idwt, reorder_bands
from .conditioning import BlockConditioning, Conditioning
from .layers import ResnetBlock, variance_scaling_
from .ncsnpp import MiddleBlock
from .packed import conv2d as packed_conv2d


def haar_net_order(x: torch.Tensor) -> torch.Tensor:
    """Haar transform of x, band-major in the network's order (LL, Q, P, HH)."""
    return reorder_bands(dwt(x), "pywt", "dwt2d")


def inverse_haar_net_order(ll: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
    """Inverse Haar transform of LL and the high bands given as one tensor in order (Q, P, HH)."""
    return idwt(reorder_bands(torch.cat([ll, highs], dim=1), "dwt2d", "pywt"))


class WaveletInputPyramid(nn.Module):
    """One step of the input pyramid: Haar transform (4 bands, /2), then a 3x3 convolution."""

    packable = True  # the CPU sampler's bf16 copy packs its weight (models/packed.py)

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.weight = nn.Parameter(variance_scaling_(torch.empty(out_ch, 4 * in_ch, 3, 3)))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_conv2d(self, haar_net_order(x) * 0.5, self.weight, self.bias, padding=1)


WaveletDownsample = WaveletInputPyramid


class WaveletDownBlock(ResnetBlock):
    """Res block that downsamples with the Haar transform instead of a FIR filter.

    Both paths keep LL/2 (the local mean); returns (output, high bands of the main path).
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, **kw):
        super().__init__(in_ch, out_ch, down=True, **kw)

    def forward(self, x: torch.Tensor, cond: BlockConditioning) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_in(F.silu(self.norm_in(x, cond.style_in)))
        c = h.shape[1]
        bands = dwt(h)  # (LL, P, Q, HH)
        highs = torch.cat([bands[:, 2 * c : 3 * c], bands[:, c : 2 * c], bands[:, 3 * c :]], dim=1)
        x_low = F.avg_pool2d(self.skip(x), 2)  # == LL / 2 of the shortcut; its high bands are unused
        return self._finish(x_low, bands[:, :c] * 0.5, cond), highs


class WaveletUpBlock(ResnetBlock):
    """Res block that upsamples with the inverse Haar transform, high bands from the encoder skip.

    The skip's bands (3 x `hi_ch` channels, order Q, P, HH) go through a grouped 3x3
    convolution (one group per band) to this block's width.
    """

    official_names = dict(ResnetBlock.official_names, high_conv="convH_0")

    def __init__(self, in_ch: int, out_ch: int | None = None, *, hi_ch: int, **kw):
        super().__init__(in_ch, out_ch, up=True, **kw)
        out_ch = out_ch or in_ch
        conv = nn.Conv2d(3 * hi_ch, 3 * out_ch, 3, padding=1, groups=3)
        variance_scaling_(conv.weight)
        nn.init.zeros_(conv.bias)
        self.high_conv = conv

    def forward(self, x: torch.Tensor, cond: BlockConditioning, highs: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(F.silu(self.norm_in(x, cond.style_in)))
        highs = self.high_conv(highs * 0.5) * 2.0
        h = inverse_haar_net_order(2.0 * h, highs)
        x = inverse_haar_net_order(2.0 * self.skip(x), highs)
        return self._finish(x, h, cond)


class FrequencyBottleneck(MiddleBlock):
    """Middle of the U-Net: res block, attention, res block, where the res blocks also process LL/2.

    First block: on the low band only (IWT back with the untouched high bands).
    Second block: on the full features, then again (same weights) on the low band.
    With `use_fbn=False` it is the plain middle block (the ablation).
    """

    def __init__(self, block1: nn.Module, attn: nn.Module, block2: nn.Module, use_fbn: bool = True):
        super().__init__(block1, attn, block2)
        self.use_fbn = use_fbn

    @staticmethod
    def _on_low_band(block: nn.Module, h: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        c = h.shape[1]
        bands = dwt(h)  # (LL, P, Q, HH): the high bands go back unchanged, order needs no swap
        low = block(bands[:, :c] * 0.5, cond[block])
        return idwt(torch.cat([low * 2.0, bands[:, c:]], dim=1))

    def forward(self, h: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        if not self.use_fbn:
            return super().forward(h, cond)
        h = self._on_low_band(self.block1, h, cond)
        h = self.attn(h)
        h = self.block2(h, cond[self.block2])
        return self._on_low_band(self.block2, h, cond)
