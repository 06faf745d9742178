"""Exponential moving average of the generator's weights.

With `ema_rampup == 0` this is the authors' EMA: it starts from the weights
after the first update and then follows `ema = d * ema + (1 - d) * w` with the
fixed decay `d = ema_decay`.

With `ema_rampup > 0` (the `tiny` preset and the demo) the decay warms up as
in EDM (Karras et al. 2022): the EMA half-life, in images, is limited to
`ema_rampup * images_seen`, i.e.

    d_t = min(ema_decay, 0.5 ** (batch / (ema_rampup * images_seen)))

so a short run's EMA tracks recent weights instead of staying at the
random initialisation.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    """An eval-mode copy of `model` (`.module`) holding the averaged weights."""

    def __init__(self, model: nn.Module, decay: float, rampup: float = 0.0):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.rampup = float(rampup)
        self.num_updates = 0
        self._params = list(self.module.parameters())
        self._buffers = list(self.module.buffers())

    def beta(self, images_seen: int, batch: int) -> float:
        """The decay for the update that brings the count of images seen to `images_seen`."""
        if self.num_updates == 0 and self.rampup == 0:
            return 0.0  # the authors' EMA is initialised with the weights after the first step
        if self.rampup > 0:
            return min(self.decay, 0.5 ** (batch / max(self.rampup * images_seen, 1e-8)))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, images_seen: int, batch: int) -> float:
        """Blend `model`'s current weights into the average; returns the decay used."""
        beta = self.beta(images_seen, batch)
        torch._foreach_lerp_(self._params, [p.detach() for p in model.parameters()], 1.0 - beta)
        for dst, src in zip(self._buffers, model.buffers()):
            dst.copy_(src)
        self.num_updates += 1
        return beta

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
