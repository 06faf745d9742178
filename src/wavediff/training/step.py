"""One DDGAN / WaveDiff training iteration, as the authors' train_wddgan.py performs it.

D step: t ~ U{0..T-1} (or drawn with `train.t_weights`), (x_t, x_{t+1}) ~ q; real loss softplus(-D(x_t, t, x_{t+1}));
every `lazy_reg` steps the R1 penalty r1_gamma / 2 * E|dD(x_t)/dx_t|^2 (not
multiplied by lazy_reg, as the authors); fake: x0' = G(x_{t+1}, t, z),
x_pos ~ q(x_t | x_{t+1}, x0'), loss softplus(D(x_pos, t, x_{t+1})); Adam step on D.
G step: fresh t, pair and z; loss softplus(-D(x_pos, t, x_{t+1})) plus, with
`rec_loss`, the L1 between x0' and the real x0 times `rec_weight` (the authors: 1);
Adam step on G. The logged reconstruction loss is the unweighted L1.

Equivalent reorganisations (same gradients, less work than the authors'):
G runs under no_grad in the D step (its weights are frozen there anyway);
x_t requires grad only on R1 steps; the real loss and the penalty share one
backward pass; on steps without R1, D judges the real and the fake pairs in
one pass of twice the batch (`segments=2` keeps their minibatch-stddev groups
apart), which runs the small-batch convolutions more efficiently. All
randomness comes from one explicit `torch.Generator`, in
the authors' draw order (t, pair noises, z, posterior noise), so a resumed run
repeats it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ExperimentConfig
from ..diffusion import VPDiffusion, randn
from ..sampling import autocast


@dataclass
class Nets:
    """The raw modules and the callables used for their forward passes.

    `G_sync` / `D_sync` synchronise gradients across processes (DDP, maybe
    compiled); `G_fast` / `D_fast` are local (maybe compiled); `D` itself (eager)
    serves the R1 pass, which needs double backward. In one process without
    compilation all of them are the raw modules.
    """

    G: nn.Module
    D: nn.Module
    G_fast: nn.Module
    D_fast: nn.Module
    G_sync: nn.Module
    D_sync: nn.Module


class TrainStep:
    def __init__(
        self,
        nets: Nets,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        diffusion: VPDiffusion,
        cfg: ExperimentConfig,
        rng: torch.Generator,
        device: torch.device,
    ):
        self.nets, self.opt_g, self.opt_d = nets, opt_g, opt_d
        self.diffusion, self.rng, self.device = diffusion, rng, device
        self.nz = cfg.generator.nz
        self.r1_gamma = float(cfg.train.r1_gamma)
        self.rec_loss = bool(cfg.train.rec_loss)
        self.rec_weight = float(cfg.train.rec_weight)
        self.precision = cfg.train.precision
        weights = cfg.train.t_weights
        self.t_weights = torch.tensor(weights, dtype=torch.float32, device=device) if weights else None
        self.autocast_cache = True  # off while a CUDA graph captures the steps (training/graphs.py)

    def _autocast(self):
        return autocast(self.device, self.precision, cache=self.autocast_cache)

    def iteration(self, x0: torch.Tensor, r1: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One training iteration without the EMA update: the D step, then the G step. Returns their losses."""
        return self.d_step(x0, r1), self.g_step(x0)

    def _pair(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.t_weights is None:
            t = torch.randint(0, self.diffusion.num_timesteps, (x0.shape[0],), generator=self.rng, device=self.device)
        else:
            t = torch.multinomial(self.t_weights, x0.shape[0], replacement=True, generator=self.rng)
        x_t, x_tp1 = self.diffusion.q_sample_pairs(x0, t, self.rng)
        return t, x_t, x_tp1

    def _fake(self, G: nn.Module, x_tp1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = randn((x_tp1.shape[0], self.nz), self.rng, self.device)
        with self._autocast():
            x0_pred = G(x_tp1, t, z).float()
        noise = randn(x_tp1.shape, self.rng, self.device)
        return x0_pred, self.diffusion.posterior_sample(x0_pred, x_tp1, t, noise)

    def d_step(self, x0: torch.Tensor, r1: bool) -> dict[str, torch.Tensor]:
        """Update D; `r1` adds the (lazy) R1 penalty this step. Returns detached losses."""
        nets = self.nets
        self.opt_d.zero_grad(set_to_none=True)
        t, x_t, x_tp1 = self._pair(x0)
        r1 = r1 and self.r1_gamma > 0
        if not r1:
            return self._d_step_joint(t, x_t, x_tp1)
        x_t.requires_grad_(True)
        # Real pass, eager (double backward) with local gradients only; the fake pass below synchronises the sum.
        with self._autocast():
            d_real = nets.D(x_t, t, x_tp1).float().view(-1)
        loss_real = F.softplus(-d_real).mean()
        (grad,) = torch.autograd.grad(d_real.sum(), x_t, create_graph=True)
        penalty = self.r1_gamma / 2 * grad.square().flatten(1).sum(1).mean()
        (loss_real + penalty).backward()
        with torch.no_grad():
            _, x_pos = self._fake(nets.G_fast, x_tp1, t)
        with self._autocast():
            d_fake = nets.D_sync(x_pos, t, x_tp1).float().view(-1)
        loss_fake = F.softplus(d_fake).mean()
        loss_fake.backward()
        self.opt_d.step()
        return {"d_real": loss_real.detach(), "d_fake": loss_fake.detach(), "r1": penalty.detach()}

    def _d_step_joint(self, t: torch.Tensor, x_t: torch.Tensor, x_tp1: torch.Tensor) -> dict[str, torch.Tensor]:
        """The D step without R1: real and fake pairs in one pass (the same randomness, in the same order)."""
        nets = self.nets
        with torch.no_grad():
            _, x_pos = self._fake(nets.G_fast, x_tp1, t)
        with self._autocast():
            both = nets.D_sync(torch.cat([x_t, x_pos]), t.repeat(2), x_tp1.repeat(2, 1, 1, 1), segments=2)
        d_real, d_fake = both.float().view(-1).chunk(2)
        loss_real, loss_fake = F.softplus(-d_real).mean(), F.softplus(d_fake).mean()
        (loss_real + loss_fake).backward()
        self.opt_d.step()
        zero = torch.zeros((), device=self.device)
        return {"d_real": loss_real.detach(), "d_fake": loss_fake.detach(), "r1": zero}

    def g_step(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update G against the current D. Returns detached losses."""
        nets = self.nets
        self.opt_g.zero_grad(set_to_none=True)
        nets.D.requires_grad_(False)
        t, _, x_tp1 = self._pair(x0)
        x0_pred, x_pos = self._fake(nets.G_sync, x_tp1, t)
        with self._autocast():
            d_out = nets.D_fast(x_pos, t, x_tp1).float().view(-1)
        loss_adv = F.softplus(-d_out).mean()
        loss_rec = F.l1_loss(x0_pred, x0) if self.rec_loss else torch.zeros((), device=self.device)
        (loss_adv + self.rec_weight * loss_rec).backward()
        self.opt_g.step()
        nets.D.requires_grad_(True)
        return {"g_adv": loss_adv.detach(), "g_rec": loss_rec.detach()}
