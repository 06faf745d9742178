"""The few-step VP diffusion of DDGAN/WaveDiff: schedule, forward pairs, posterior, sampler.

Steps are integers 0..T-1. Training draws a step t and a pair (x_t, x_{t+1});
the generator sees x_{t+1} and predicts x_0; the next (less noisy) state is
drawn from the Gaussian posterior q(x_t | x_{t+1}, x_0).

Randomness always comes from an explicit `torch.Generator`, or from one
generator per sample (a list), so that sample i depends only on its own seed,
whatever the batch it is drawn in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from .config import DiffusionConfig

Generators = torch.Generator | Sequence[torch.Generator] | None
EPS_SMALL = 1e-3  # the continuous time grid runs from EPS_SMALL to 1
FIRST_BETA = 1e-8  # a padding step in front of the T real steps


def randn(shape: Sequence[int], generator: Generators = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise; with a list of generators, row i comes from generator i."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        rows = [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
        return torch.stack(rows).to(device)
    return torch.randn(
        tuple(shape), generator=generator, device=device if generator is None else generator.device, dtype=dtype
    ).to(device)


class VPDiffusion:
    """Coefficients of the T-step discretised VP SDE (beta_min, beta_max), float32 on `device`.

    Arrays with T+1 entries (index 0 is the padding step): `betas_full`, `a_s`, `sigmas`,
    `a_s_cum`, `sigmas_cum`. Posterior arrays with T entries, indexed by step t:
    `posterior_mean_coef1`, `posterior_mean_coef2`, `posterior_variance`,
    `posterior_log_variance_clipped`.
    """

    def __init__(self, cfg: DiffusionConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.num_timesteps = T = int(cfg.num_timesteps)
        if T < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {T}")
        t = torch.from_numpy(np.arange(T + 1, dtype=np.float64) / T) * (1.0 - EPS_SMALL) + EPS_SMALL
        if cfg.use_geometric:
            var = cfg.beta_min * (cfg.beta_max / cfg.beta_min) ** t
        else:
            log_mean = -0.25 * t**2 * (cfg.beta_max - cfg.beta_min) - 0.5 * t * cfg.beta_min
            var = 1.0 - torch.exp(2.0 * log_mean)
        alpha_bars = 1.0 - var
        betas = 1.0 - alpha_bars[1:] / alpha_bars[:-1]
        self.t_grid = t
        betas_full = torch.cat((torch.tensor([FIRST_BETA], dtype=torch.float64), betas)).float()
        self.betas_full = betas_full
        self.sigmas = betas_full.sqrt()
        self.a_s = torch.sqrt(1.0 - betas_full)
        # float32 numpy cumprod/sqrt: bit-identical to the released models' training schedule
        a_s_cum = np.cumprod(self.a_s.numpy())
        self.a_s_cum = torch.from_numpy(a_s_cum)
        self.sigmas_cum = torch.from_numpy(np.sqrt(1.0 - a_s_cum**2))

        b = betas_full[1:]
        alphas = 1.0 - b
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat((torch.ones(1), alphas_cumprod[:-1]))
        self.posterior_variance = b * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_log_variance_clipped = torch.log(self.posterior_variance.clamp(min=1e-20))
        self.posterior_mean_coef1 = b * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - alphas_cumprod)
        self.posterior_std = torch.exp(0.5 * self.posterior_log_variance_clipped)
        self.to(device)

    _ARRAYS = (
        "betas_full",
        "sigmas",
        "a_s",
        "a_s_cum",
        "sigmas_cum",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "posterior_std",
    )

    def to(self, device) -> VPDiffusion:
        for name in self._ARRAYS:
            setattr(self, name, getattr(self, name).to(device))
        self.device = torch.device(device)
        return self

    @staticmethod
    def _at(arr: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return arr[t].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) (t = 0 already means one step of noise, as in the authors' code)."""
        return self._at(self.a_s_cum, t, x0) * x0 + self._at(self.sigmas_cum, t, x0) * noise

    def q_sample_pairs(
        self, x0: torch.Tensor, t: torch.Tensor, generator: Generators = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training pair (x_t, x_{t+1}) for integer steps t in [0, T)."""
        noise_t = randn(x0.shape, generator, x0.device, x0.dtype)
        noise_tp1 = randn(x0.shape, generator, x0.device, x0.dtype)
        x_t = self.q_sample(x0, t, noise_t)
        x_tp1 = self._at(self.a_s, t + 1, x0) * x_t + self._at(self.sigmas, t + 1, x0) * noise_tp1
        return x_t, x_tp1

    def posterior_sample(
        self, x0: torch.Tensor, x_tp1: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """x_t ~ q(x_t | x_{t+1}, x_0); no noise is added at t = 0."""
        mean = self._at(self.posterior_mean_coef1, t, x0) * x0 + self._at(self.posterior_mean_coef2, t, x0) * x_tp1
        std = self._at(self.posterior_std, t, x0) * (t != 0).to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return mean + std * noise

    def sample(
        self,
        generator_net: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        x_init: torch.Tensor,
        nz: int,
        generator: Generators = None,
    ) -> torch.Tensor:
        """Run the T denoising steps from `x_init` (pure noise) and return the final x_0 estimate.

        At each step t = T-1 .. 0, draws z then the posterior noise from `generator`
        (per sample when it is a list).
        """
        zs, noises = self.draw_noise(x_init.shape, nz, generator, x_init.device, x_init.dtype)
        return self.denoise(generator_net, x_init, zs, noises)

    def draw_noise(
        self, shape: Sequence[int], nz: int, generator: Generators = None, device=None, dtype=torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All the randomness of the T steps, in `sample`'s order: zs [T, B, nz] and posterior noises [T, *shape]."""
        zs, noises = [], []
        for _ in range(self.num_timesteps):
            zs.append(randn((shape[0], nz), generator, device, dtype))
            noises.append(randn(shape, generator, device, dtype))
        return torch.stack(zs), torch.stack(noises)

    def denoise(
        self,
        generator_net: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        x_init: torch.Tensor,
        zs: torch.Tensor,
        noises: torch.Tensor,
    ) -> torch.Tensor:
        """The T steps with pre-drawn noise (`draw_noise`): no RNG inside, so it can be compiled or graph-captured."""
        *_, (_, _, x) = self.denoise_steps(generator_net, x_init, zs, noises)
        return x

    def denoise_steps(
        self,
        generator_net: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        x_init: torch.Tensor,
        zs: torch.Tensor,
        noises: torch.Tensor,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """`denoise` one step at a time: yields (t, predicted x_0, x_t) for t = T-1 .. 0.

        Step k (t = T-1-k) calls `generator_net(x_{t+1}, t, zs[k])` and adds `noises[k]` through the
        posterior; any pre-drawn zs and noises (e.g. interpolated ones) steer the same sampler.
        """
        x = x_init
        b = x.shape[0]
        for k, i in enumerate(reversed(range(self.num_timesteps))):
            t = torch.full((b,), i, dtype=torch.int64, device=x.device)
            x0 = generator_net(x, t, zs[k].to(x.dtype)).to(x.dtype)
            x = self.posterior_sample(x0, x, t, noises[k].to(x.dtype))
            yield i, x0, x
