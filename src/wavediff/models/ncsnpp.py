"""NCSN++ generator with AdaGN (the DDGAN generator), in the network's own layout.

A U-Net over `len(ch_mult)` resolutions:

    conv_in -> encoder levels (res blocks [+ attention], down-sampling res block, input pyramid)
            -> middle (res block, attention, res block)
            -> decoder levels (res blocks on [h, skip], [attention], up-sampling res block)
            -> output head (GroupNorm, SiLU, conv)

Every res block is conditioned on the step embedding (a bias) and on the
latent z through adaptive group norm; `conditioning(t, z)` computes all of it
before the body runs (`models/conditioning.py`). The module takes and returns the
tensor exactly as the network sees it (after patchify, in the band order it
was trained with); `generator.Generator` adapts the outside layout.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import GeneratorConfig
from ..errors import ConfigError
from .conditioning import Conditioning, stacked_conditioning
from .layers import SQRT_HALF, AttnBlock, FIRDownsample, OutputHead, ResnetBlock, TimeEmbedding, ZMapping, conv3x3


def check_supported(cfg: GeneratorConfig) -> None:
    """Raise ConfigError for settings of the authors' code that we do not implement."""
    supported = {
        "net_type": ("wavelet", "normal"),
        "resblock_type": ("biggan",),
        "progressive": ("none",),
        "progressive_input": ("residual", "none"),
        "progressive_combine": ("sum", "cat"),
        "embedding_type": ("positional", "fourier"),
    }
    for name, allowed in supported.items():
        value = getattr(cfg, name)
        if value not in allowed:
            raise ConfigError(
                f"generator.{name}={value!r} is not supported; use one of {allowed} "
                f"(the settings of the paper's models)"
            )
    if not cfg.ch_mult:
        raise ConfigError("generator.ch_mult is empty; give one multiplier per resolution, e.g. 1,2,2,2")
    if cfg.resolution % (cfg.patch_size * 2 ** (len(cfg.ch_mult) - 1)):
        raise ConfigError(
            f"generator.resolution {cfg.resolution} must be divisible by patch_size * "
            f"2^(len(ch_mult)-1) = {cfg.patch_size * 2 ** (len(cfg.ch_mult) - 1)}"
        )
    uses_fir = (
        cfg.net_type == "normal" or not cfg.use_freq or (cfg.progressive_input == "residual" and not cfg.use_residual)
    )
    if uses_fir and not cfg.fir:
        raise ConfigError("generator.fir=False (nearest/average resampling) is not supported; set generator.fir=true")


def level_resolutions(cfg: GeneratorConfig) -> list[int]:
    base = cfg.resolution // cfg.patch_size
    return [base >> i for i in range(len(cfg.ch_mult))]


class Level(nn.Module):
    """The blocks of one resolution of the encoder or decoder (absent parts are None / empty)."""

    def __init__(
        self,
        blocks: list[nn.Module],
        attns: list[nn.Module] = (),
        resample: nn.Module | None = None,
        pyramid: nn.Module | None = None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)
        self.resample = resample
        self.pyramid = pyramid


class MiddleBlock(nn.Module):
    """Res block, self-attention, res block at the coarsest resolution."""

    def __init__(self, block1: nn.Module, attn: nn.Module, block2: nn.Module):
        super().__init__()
        self.block1, self.attn, self.block2 = block1, attn, block2

    def forward(self, h: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.block2(self.attn(self.block1(h, cond[self.block1])), cond[self.block2])

    def official_order(self) -> list[nn.Module]:
        return [self.block1, self.attn, self.block2]


class UNet(nn.Module):
    """What the plain and the wavelet NCSN++ share: the conditioning, the body's pass, the authors' order.

    `forward(x, t, z)` = `predict(x, conditioning(t, z))`, in network layout, returning the pre-tanh output.
    Subclasses build `time_embed`, `z_mapping`, `conv_in`, `encoder`, `middle`, `decoder` and `head`.
    """

    carries_highs = False  # frequency-aware blocks: each encoder down block hands its high bands to a decoder up block

    def conditioning(self, t: torch.Tensor, z: torch.Tensor, stacked: bool = False) -> Conditioning:
        """Every res block's time bias and AdaGN styles for steps t [B] and latents z [B, nz]; `stacked`: as two
        matrix products over all blocks (fewer, larger kernels for GPUs: models/conditioning.py)."""
        temb, zemb = self.time_embed(t), self.z_mapping(z)
        blocks = [m for m in self.modules() if isinstance(m, ResnetBlock)]
        if stacked:
            return stacked_conditioning(blocks, temb, zemb)
        return Conditioning({m: m.conditioning(temb, zemb) for m in blocks})

    def predict(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return unet_forward(self, x, cond)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.predict(x, self.conditioning(t, z))

    def official_order(self) -> list[nn.Module]:
        """Our modules in the order of the authors' flat `all_modules` list (for checkpoint conversion)."""
        return official_order(self)


class NCSNpp(UNet):
    """The plain NCSN++ generator: `forward(x, t, z)` in network layout, returns the pre-tanh output."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        check_supported(cfg)
        self.cfg = cfg
        nf, temb_dim = cfg.nf, 4 * cfg.nf
        channels = cfg.in_channels * cfg.patch_size**2
        res = level_resolutions(cfg)

        def block(in_ch, out_ch=None, **kw):
            return ResnetBlock(
                in_ch,
                out_ch,
                temb_dim=temb_dim,
                zemb_dim=cfg.z_emb_dim,
                dropout=cfg.dropout,
                fir_kernel=cfg.fir_kernel,
                skip_rescale=cfg.skip_rescale,
                **kw,
            )

        def attn(ch):
            return AttnBlock(ch, skip_rescale=cfg.skip_rescale)

        self.time_embed = TimeEmbedding(nf, cfg.embedding_type, cfg.fourier_scale, cfg.conditional)
        self.conv_in = conv3x3(channels, nf)
        skip_ch, ch, pyr_ch = [nf], nf, channels
        self.encoder = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(block(ch, nf * mult))
                ch = nf * mult
                if res[i] in cfg.attn_resolutions:
                    attns.append(attn(ch))
                skip_ch.append(ch)
            down = pyramid = None
            if i < len(cfg.ch_mult) - 1:
                down = block(ch, down=True)
                if cfg.progressive_input == "residual":
                    pyramid, pyr_ch = FIRDownsample(pyr_ch, ch, cfg.fir_kernel), ch
                skip_ch.append(ch)
            self.encoder.append(Level(blocks, attns, down, pyramid))

        self.middle = MiddleBlock(block(ch), attn(ch), block(ch))

        self.decoder = nn.ModuleList()
        for i in reversed(range(len(cfg.ch_mult))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(block(ch + skip_ch.pop(), nf * cfg.ch_mult[i]))
                ch = nf * cfg.ch_mult[i]
            attns = [attn(ch)] if res[i] in cfg.attn_resolutions else []
            up = block(ch, up=True) if i > 0 else None
            self.decoder.append(Level(blocks, attns, up))
        self.head = OutputHead(ch, channels)
        self.z_mapping = ZMapping(cfg.nz, cfg.z_emb_dim, cfg.n_mlp)


def official_order(net: nn.Module) -> list[nn.Module]:
    """Shared walk of NCSN++-shaped networks (also the wavelet one) in the authors' construction order."""
    mods: list[nn.Module] = list(net.time_embed.official_order()) + [net.conv_in]
    for level in net.encoder:
        for i, block in enumerate(level.blocks):
            mods.append(block)
            if len(level.attns):
                mods.append(level.attns[i])
        mods += [m for m in (level.resample, level.pyramid) if m is not None]
    mods += net.middle.official_order()
    for level in net.decoder:
        mods += list(level.blocks) + list(level.attns) + ([level.resample] if level.resample is not None else [])
    return mods + net.head.official_order()


def unet_forward(net: UNet, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """The NCSN++ U-Net pass shared by the plain and the wavelet generator (pre-tanh output).

    With `net.carries_highs` (frequency-aware blocks), each encoder down block also
    returns its high bands, which the matching decoder up block consumes.
    """
    cfg, carries_highs = net.cfg, net.carries_highs
    if not cfg.centered:
        x = 2 * x - 1.0
    pyramid = x
    h = net.conv_in(x)
    skips, highs = [h], []
    for level in net.encoder:
        for i, block in enumerate(level.blocks):
            h = block(h, cond[block])
            if len(level.attns):
                h = level.attns[i](h)
            skips.append(h)
        if level.resample is not None:
            h = level.resample(h, cond[level.resample])
            if carries_highs:
                h, hi = h
                highs.append(hi)
            if level.pyramid is not None:
                merged = level.pyramid(pyramid) + h
                pyramid = h = merged * SQRT_HALF if cfg.skip_rescale else merged
            skips.append(h)
    h = net.middle(h, cond)
    for level in net.decoder:
        for block in level.blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), cond[block])
        for a in level.attns:
            h = a(h)
        if level.resample is not None:
            up = cond[level.resample]
            h = level.resample(h, up, highs.pop()) if carries_highs else level.resample(h, up)
    return net.head(h)
