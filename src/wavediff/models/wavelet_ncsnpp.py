"""WaveDiff's wavelet generator: NCSN++ with the paper's three wavelet components.

    conv_in -> encoder levels: res blocks [+ attention], then a WaveletDownBlock
               (its high bands kept for the decoder) and a WaveletInputPyramid step
            -> FrequencyBottleneck (res blocks also applied to the low band)
            -> decoder levels: res blocks on [h, skip], [attention], then a
               WaveletUpBlock fed with the matching encoder high bands
            -> output head

`use_freq=False` replaces the wavelet down/up blocks by FIR res blocks,
`use_fbn=False` the bottleneck by a plain middle block, `use_residual=False`
the wavelet pyramid by a FIR-downsampling convolution (the paper's ablations).
Works in the network's own layout; `generator.Generator` adapts the outside one.
"""

from __future__ import annotations

import torch.nn as nn

from ..config import GeneratorConfig
from .layers import AttnBlock, FIRDownsample, OutputHead, ResnetBlock, TimeEmbedding, ZMapping, conv3x3
from .ncsnpp import Level, UNet, check_supported, level_resolutions
from .wavelet_blocks import FrequencyBottleneck, WaveletDownBlock, WaveletInputPyramid, WaveletUpBlock


class WaveletNCSNpp(UNet):
    """`forward(x, t, z)` in network layout (12 x patch^2 channels), returns the pre-tanh output."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        check_supported(cfg)
        self.cfg = cfg
        self.carries_highs = cfg.use_freq
        nf, temb_dim = cfg.nf, 4 * cfg.nf
        channels = cfg.in_channels * cfg.patch_size**2
        res = level_resolutions(cfg)
        common = dict(
            temb_dim=temb_dim,
            zemb_dim=cfg.z_emb_dim,
            dropout=cfg.dropout,
            fir_kernel=cfg.fir_kernel,
            skip_rescale=cfg.skip_rescale,
        )

        def attn(ch):
            return AttnBlock(ch, skip_rescale=cfg.skip_rescale)

        self.time_embed = TimeEmbedding(nf, cfg.embedding_type, cfg.fourier_scale, cfg.conditional)
        self.conv_in = conv3x3(channels, nf)
        skip_ch, ch, pyr_ch = [nf], nf, channels
        high_ch = []  # width of each encoder level's high-band skip
        self.encoder = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(ch, nf * mult, **common))
                ch = nf * mult
                if res[i] in cfg.attn_resolutions:
                    attns.append(attn(ch))
                skip_ch.append(ch)
            down = pyramid = None
            if i < len(cfg.ch_mult) - 1:
                high_ch.append(ch)
                down = WaveletDownBlock(ch, **common) if cfg.use_freq else ResnetBlock(ch, down=True, **common)
                if cfg.progressive_input == "residual":
                    pyramid = (
                        WaveletInputPyramid(pyr_ch, ch)
                        if cfg.use_residual
                        else FIRDownsample(pyr_ch, ch, cfg.fir_kernel)
                    )
                    pyr_ch = ch
                skip_ch.append(ch)
            self.encoder.append(Level(blocks, attns, down, pyramid))

        self.middle = FrequencyBottleneck(
            ResnetBlock(ch, **common), attn(ch), ResnetBlock(ch, **common), use_fbn=cfg.use_fbn
        )

        self.decoder = nn.ModuleList()
        for i in reversed(range(len(cfg.ch_mult))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(ch + skip_ch.pop(), nf * cfg.ch_mult[i], **common))
                ch = nf * cfg.ch_mult[i]
            attns = [attn(ch)] if res[i] in cfg.attn_resolutions else []
            up = None
            if i > 0:
                up = (
                    WaveletUpBlock(ch, hi_ch=high_ch.pop(), **common)
                    if cfg.use_freq
                    else ResnetBlock(ch, up=True, **common)
                )
            self.decoder.append(Level(blocks, attns, up))
        self.head = OutputHead(ch, channels)
        self.z_mapping = ZMapping(cfg.nz, cfg.z_emb_dim, cfg.n_mlp)
