"""`train_run`: a whole training run, from a resolved config to the final EMA generator.

Run length: `train.steps` iterations when > 0, else `train.num_epoch` epochs;
`train.max_minutes` > 0 stops earlier once that much wall time has passed in
this invocation (the final checkpoint and export are still written).
Learning rates follow the authors' cosine decay (CosineAnnealingLR, eta_min
1e-5, stepped once per epoch) over `num_epoch` epochs, or, when `train.steps`
is set, over the ceil(steps / batches_per_epoch) epochs the run lasts; the rate
then stays at 1e-5 (the schedule never rises again). Resuming with another step
count moves the horizon and continues on the new cosine from the current epoch.

Randomness: the weights are initialised from `train.seed` (identical on every
rank); each image's flip depends only on (seed, epoch, index), whichever process
or DataLoader worker loads it; each rank draws its training noise from RNGs
seeded with (seed, rank), all of which are saved in the training state, so a
resumed run continues exactly as an uninterrupted one (bit-exact on CPU, with
any number of data workers).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import random
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.nn.parallel import DistributedDataParallel

from ..checkpoints.io import atomic_torch_save, atomic_write, remove_stale_temporaries, save_generator
from ..config import ExperimentConfig
from ..data import build_dataloader, build_dataset
from ..diffusion import VPDiffusion
from ..errors import ConfigError, Interrupted, OutputError, WaveDiffError, first_line
from ..models.discriminator import build_discriminator, check_stddev_batch
from ..models.generator import build_generator
from ..runtime import configure_torch, configure_training_device
from ..sampling import sample, to_uint8
from ..wavelets import image_to_wavelet
from .distributed import DistContext, PeerLost, init_distributed, is_peer_failure
from .ema import EMA
from .graphs import GraphedTrainStep, check_cuda_graphs
from .logging import RunLog
from .metrics import MetricTracker, build_feature_space
from .state import (
    STATE_FORMAT,
    STATE_VERSION,
    capture_rng,
    check_same_config,
    checkpoint_dir,
    generator_path,
    latest_state,
    load_state,
    newest_readable_state,
    numbered_states,
    prune,
    restore_rng,
    set_aside,
    state_path,
)
from .step import Nets, TrainStep
from .stopping import SIGNAL_NAMES, GracefulStop

ETA_MIN = 1e-5
SAMPLE_SEEDS = range(64)
LOSS_NAMES = ("loss_d_real", "loss_d_fake", "r1", "loss_g_adv", "loss_rec")


# Buffers (fixed Fourier features, FIR kernels) are equal on every rank: no broadcast before each forward.
# PyTorch 2.13 renamed the option and warns about the old name at every start.
NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def train_run(
    cfg: ExperimentConfig, out: str | Path, *, resume: str | None = None, ctx: DistContext | None = None
) -> Path:
    """Train `cfg` into run directory `out` (resume: None, "auto" or a state path).

    Returns the path of the final EMA generator checkpoint.
    """
    configure_torch()  # flush denormals: fresh NCSN++ weights make early steps 30x slower otherwise
    return Trainer(cfg, Path(out), resume, ctx or init_distributed()).run()


def validate_config(cfg: ExperimentConfig) -> None:
    """ConfigError for settings the training loop cannot run."""
    tc = cfg.train
    if cfg.space not in ("wavelet", "pixel"):
        raise ConfigError(f"space={cfg.space!r} is unknown; use 'wavelet' or 'pixel'")
    expected = {
        "generator.in_channels": (cfg.generator.in_channels, cfg.data_channels),
        "discriminator.in_channels": (cfg.discriminator.in_channels, cfg.data_channels),
        "generator.resolution": (cfg.generator.resolution, cfg.data_resolution),
        "data.image_size": (cfg.data.image_size, cfg.image_size),
    }
    for key, (got, want) in expected.items():
        if got != want:
            raise ConfigError(
                f"{key}={got} does not fit a {cfg.space}-space model of {cfg.image_size}px images "
                f"(expected {want}); set it with --set {key}={want}"
            )
    if tc.precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision={tc.precision!r} is not supported for training; use fp32 or bf16")
    _check_ranges(cfg)
    for key in ("batch_size", "lazy_reg", "checkpoint_every", "keep_last", "log_every"):
        if getattr(tc, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1, got {getattr(tc, key)}")
    if tc.metrics_every < 0 or tc.metrics_n < 0:
        raise ConfigError(
            f"train.metrics_every and train.metrics_n must be >= 0, got {tc.metrics_every}, {tc.metrics_n}"
        )
    if tc.steps < 0 or tc.num_epoch < 1 or tc.sample_every < 0:
        raise ConfigError("train.steps and train.sample_every must be >= 0 and train.num_epoch >= 1")
    for key, value, zero in (
        ("train.max_minutes", tc.max_minutes, "no time limit"),
        ("data.num_workers", cfg.data.num_workers, "load in the main process"),
        ("data.max_images", cfg.data.max_images, "all images"),
    ):
        if value < 0:
            raise ConfigError(f"{key} must be >= 0 (0: {zero}), got {value}")
    if not 0.0 <= tc.ema_decay < 1.0 or tc.ema_rampup < 0:
        raise ConfigError(f"train.ema_decay must be in [0, 1) and ema_rampup >= 0, got {tc.ema_decay}, {tc.ema_rampup}")
    if tc.rec_weight <= 0:
        raise ConfigError(
            f"train.rec_weight={tc.rec_weight:g} must be > 0; to train without the L1 loss set train.rec_loss=false"
        )
    if tc.t_weights:
        T = cfg.diffusion.num_timesteps
        if len(tc.t_weights) != T or min(tc.t_weights) < 0 or sum(tc.t_weights) <= 0:
            raise ConfigError(
                f"train.t_weights={','.join(map(str, tc.t_weights))} must give {T} non-negative weights "
                f"(one per diffusion step, not all zero); e.g. --set train.t_weights={','.join(['1'] * T)}"
            )
    if cfg.generator.embedding_type == "fourier":
        raise ConfigError(
            "generator.embedding_type=fourier embeds log(t), which is -inf at the first diffusion step (t = 0), so "
            "training fails at once (the authors' code does the same; their presets all use positional); use "
            "--set generator.embedding_type=positional"
        )
    check_stddev_batch(tc.batch_size)
    _check_buildable(cfg)


def _check_buildable(cfg: ExperimentConfig) -> None:
    """Build both networks on the meta device (no memory, no arithmetic): settings whose channel counts GroupNorm
    cannot split, and the like, fail here in one line instead of deep inside the run."""
    try:
        with torch.device("meta"):
            build_generator(cfg.generator)
            build_discriminator(cfg.discriminator)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise ConfigError(
            f"these generator/discriminator settings make no network ({first_line(e, 160)}); channel counts "
            f"(nf x ch_mult) must split into GroupNorm's min(channels // 4, 32) groups: multiples of 32 always "
            f"do, e.g. --set generator.nf=64"
        ) from None


def _check_ranges(cfg: ExperimentConfig) -> None:
    """Numbers outside what they can mean: one line each, before torch meets them deep inside a module."""
    tc, g, d = cfg.train, cfg.generator, cfg.diffusion

    def bad(key: str, value, want: str):
        return ConfigError(f"{key}={value} is out of range; it must be {want} (set it with --set {key}=...)")

    if not 0 <= tc.seed < 2**63:
        raise bad("train.seed", tc.seed, "an integer from 0 to 2^63 - 1")
    for key, value in (("train.lr_g", tc.lr_g), ("train.lr_d", tc.lr_d)):
        if not (math.isfinite(value) and value > 0):
            raise bad(key, value, "a positive number, e.g. 1e-4")
    for key, value in (("train.beta1", tc.beta1), ("train.beta2", tc.beta2)):
        if not 0 <= value < 1:
            raise bad(key, value, "in [0, 1) (Adam's decay rates; the paper: 0.5 and 0.9)")
    if not (math.isfinite(tc.r1_gamma) and tc.r1_gamma >= 0):
        raise bad("train.r1_gamma", tc.r1_gamma, ">= 0 (0: no R1 penalty)")
    if not 0 <= g.dropout < 1:
        raise bad("generator.dropout", g.dropout, "in [0, 1)")
    for key, value, least in (
        ("generator.nf", g.nf, 4),  # GroupNorm takes min(channels // 4, 32) groups
        ("generator.nz", g.nz, 1),
        ("generator.z_emb_dim", g.z_emb_dim, 1),
        ("generator.num_res_blocks", g.num_res_blocks, 1),
        ("generator.n_mlp", g.n_mlp, 0),
        ("diffusion.num_timesteps", d.num_timesteps, 1),
    ):
        if value < least:
            raise bad(key, value, f"at least {least}")
    if not (0 < d.beta_min <= d.beta_max and math.isfinite(d.beta_max)):
        raise ConfigError(
            f"diffusion.beta_min={d.beta_min} and beta_max={d.beta_max} must satisfy 0 < beta_min <= beta_max "
            f"(the paper: 0.1 and 20)"
        )


class Trainer:
    """Builds everything a run needs (checking the run directory and any resume state first), then `run()`s it."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, resume: str | None, ctx: DistContext):
        validate_config(cfg)
        self.cfg, self.run_dir, self.ctx = cfg, run_dir, ctx
        self.unreadable_states: list[tuple[Path, str]] = []
        self.device = ctx.device
        configure_training_device(self.device)
        tc = cfg.train
        if tc.cuda_graphs:  # before anything is read or written
            check_cuda_graphs(self.device, ctx.world_size)
        state = self._resume_state(resume)
        self.step = state["step"] if state else 0
        self.epoch = state["epoch"] if state else 0
        self.batch_in_epoch = state["batch_in_epoch"] if state else 0

        dataset = build_dataset(cfg.data)
        self.dataset_info = {"images": len(dataset), "skipped_unreadable": getattr(dataset, "skipped", 0)}
        self.loader = build_dataloader(
            dataset,
            tc.batch_size,
            shuffle=True,
            num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.persistent_workers,
            seed=tc.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            drop_last=True,
            start_epoch=self.epoch,
            start_batch=self.batch_in_epoch,
        )
        self.batches_per_epoch = self.loader.sampler.num_samples // tc.batch_size
        self.global_batch = tc.batch_size * ctx.world_size
        self.total_steps = tc.steps or tc.num_epoch * self.batches_per_epoch
        self.num_epochs = math.ceil(tc.steps / self.batches_per_epoch) if tc.steps else tc.num_epoch
        if state and self.step >= self.total_steps:
            raise ConfigError(
                f"the run in {run_dir} is already at step {self.step} of {self.total_steps}: nothing to train; "
                f"pass --steps N with N > {self.step} to train it longer (its generator: "
                f"{generator_path(run_dir, None)})"
            )

        self.nets = self._build_nets()
        self.ema = EMA(self.nets.G, tc.ema_decay, tc.ema_rampup) if tc.use_ema else None
        params = dict(betas=(tc.beta1, tc.beta2), fused=True)
        self.opt_g = torch.optim.Adam(self.nets.G.parameters(), lr=tc.lr_g, **params)
        self.opt_d = torch.optim.Adam(self.nets.D.parameters(), lr=tc.lr_d, **params)
        self.sched_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_g, self.num_epochs, eta_min=ETA_MIN)
        self.sched_d = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_d, self.num_epochs, eta_min=ETA_MIN)
        self.rng = self._seed_rngs()
        if state:
            self._load(state)
        self.diffusion = VPDiffusion(cfg.diffusion, self.device)
        self.train_step = TrainStep(self.nets, self.opt_g, self.opt_d, self.diffusion, cfg, self.rng, self.device)
        self.graphed = GraphedTrainStep(self.train_step) if tc.cuda_graphs else None
        self.iterate = self.graphed.iteration if self.graphed else self.train_step.iteration
        self.resumed_from = state.get("path") if state else None
        self.metrics = None  # rank 0 measures the EMA generator every train.metrics_every steps
        if tc.metrics_every and ctx.is_main:
            self.metrics = MetricTracker(cfg, run_dir, self.device, build_feature_space(cfg, self.device))
            if state and state.get("metrics"):
                self.metrics.load_state_dict(state["metrics"])
        self.ema_beta: float | None = None  # the decay of the last EMA update, for the log

    # ------------------------------------------------------------------ setup
    def _resume_state(self, resume: str | None) -> dict | None:
        """The training state to continue from, after checking the run directory and the config."""
        run_dir, cfg = self.run_dir, self.cfg
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir} is a file; choose a directory for the run")
        config_file = run_dir / "config.json"
        if resume is None:
            held = "config.json" if config_file.exists() else _checkpoint_files(run_dir)
            if held:
                raise ConfigError(
                    f"{run_dir} already holds a run ({held}); pass --resume auto to continue it, or choose a new --out"
                )
            return None
        if resume == "auto":  # the newest state that loads; newer unreadable ones are reported in run()
            found = newest_readable_state(run_dir)
            path, state, self.unreadable_states = found.path, found.state, found.unreadable
        else:
            path = Path(resume)
            state = load_state(path)
        if path is None:  # nothing saved yet: start over, but only as the same run
            if config_file.exists():
                check_same_config(_read_json(config_file), cfg.to_dict(), f"the run in {run_dir}")
                if self.ctx.is_main:
                    print(
                        f"note: the run in {run_dir} stopped before its first checkpoint; it starts again from "
                        f"step 0 (its log continues after a new 'start' record)"
                    )
            elif self.ctx.is_main:
                print(f"note: no training state in {run_dir}; --resume auto starts a new run there")
            return None
        check_same_config(state["config"], cfg.to_dict(), f"training state {path}")
        if resume != "auto":  # a state from elsewhere must not overwrite another run, or this run's later states
            if config_file.exists():
                check_same_config(_read_json(config_file), state["config"], f"the run in {run_dir}")
            newer = [p.name for step, p in numbered_states(run_dir) if step > state["step"]]
            if newer:
                raise ConfigError(
                    f"{run_dir} holds later states than {path.name} ({', '.join(newer[:3])}); continuing would "
                    f"overwrite them: move them out of {checkpoint_dir(run_dir)} first, or choose a new --out"
                )
        state["path"] = str(path)
        return state

    def _build_nets(self) -> Nets:
        cfg, ctx = self.cfg, self.ctx
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        G = build_generator(cfg.generator).to(self.device)
        D = build_discriminator(cfg.discriminator).to(self.device)
        # static shapes: D judges batches of two sizes (B, and 2B for the joint real + fake pass); by default the
        # second size would recompile D for any batch size, with slower shape-generic kernels for the joint pass
        G_fast, D_fast = [torch.compile(net, dynamic=False) for net in (G, D)] if cfg.train.compile else [G, D]
        if not ctx.distributed:
            return Nets(G, D, G_fast, D_fast, G_fast, D_fast)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # D's last linear weight is [1, 128]: its gradient arrives with the strides of a transpose, which differ
        # from the bucket's only in the size-1 dimension (the same memory layout), and DDP warns on every rank
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        G_sync = DistributedDataParallel(G_fast, device_ids=ids, **NO_BUFFER_SYNC)
        D_sync = DistributedDataParallel(D_fast, device_ids=ids, **NO_BUFFER_SYNC)
        return Nets(G, D, G_fast, D_fast, G_sync, D_sync)

    def _seed_rngs(self) -> torch.Generator:
        """Seed this rank's RNGs from (seed, rank); returns the generator of the training noise."""
        s = np.random.SeedSequence([self.cfg.train.seed, self.ctx.rank]).generate_state(4)
        torch.manual_seed(int(s[0]))  # any draw from torch's global RNG in this process (flips use flip_for)
        np.random.seed(int(s[1]))
        random.seed(int(s[2]))
        return torch.Generator(self.device).manual_seed(int(s[3]))

    def _load(self, state: dict) -> None:
        self.nets.G.load_state_dict(state["G"])
        self.nets.D.load_state_dict(state["D"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        tc = self.cfg.train
        for sched, opt, lr in ((self.sched_g, self.opt_g, tc.lr_g), (self.sched_d, self.opt_d, tc.lr_d)):
            # the run length or the learning rate changed: continue on the new cosine from the current epoch
            if sched.T_max != self.num_epochs or any(base != lr for base in sched.base_lrs):
                sched.T_max, sched.base_lrs = self.num_epochs, [lr] * len(opt.param_groups)
                for group in opt.param_groups:
                    group["initial_lr"] = lr
                    group["lr"] = _cosine(lr, min(self.epoch, self.num_epochs), self.num_epochs)
        rngs = state["rng"]
        if len(rngs) == self.ctx.world_size:
            restore_rng(rngs[self.ctx.rank], self.rng)
        elif self.ctx.is_main:
            print(
                f"note: the state was saved by {len(rngs)} process(es), this run has {self.ctx.world_size}; "
                f"random streams are re-seeded, the data order is re-sharded, and the global batch is now "
                f"{self.cfg.train.batch_size * self.ctx.world_size} instead of "
                f"{self.cfg.train.batch_size * len(rngs)} (train.batch_size is per process; the learning rates "
                f"stay as they are)"
            )

    # ------------------------------------------------------------------ loop
    def run(self) -> Path:
        ctx, cfg = self.ctx, self.cfg
        if ctx.is_main:
            self._set_aside_unreadable()
            for folder in (checkpoint_dir(self.run_dir), self.run_dir, self.run_dir / "samples"):
                for p in remove_stale_temporaries(folder):  # a process killed while saving left them
                    print(f"note: removed {p}, a partial file of an interrupted save")
            atomic_write(self.run_dir / "config.json", lambda tmp: Path(tmp).write_text(cfg.to_json()))
        ctx.barrier()
        self.log = RunLog(
            self.run_dir if ctx.is_main else None, self.total_steps, self.step, time_budget_s=60 * cfg.train.max_minutes
        )
        if self.metrics is not None:
            self.metrics.log = self.log
        self.log.event(
            "resume" if self.resumed_from else "start",
            step=self.step,
            epoch=self.epoch,
            resumed_from=self.resumed_from,
            world_size=ctx.world_size,
            batch_per_process=cfg.train.batch_size,
            global_batch=self.global_batch,
            total_steps=self.total_steps,
            batches_per_epoch=self.batches_per_epoch,
            device=str(self.device),
            precision=cfg.train.precision,
            cuda_graphs=cfg.train.cuda_graphs,
            dataset=self.dataset_info,
        )
        self.log.write(
            f"training {cfg.name} on {self.device} x{ctx.world_size}: batch {cfg.train.batch_size} per "
            f"process, {self.global_batch} global; steps {self.step}..{self.total_steps} "
            f"({self.batches_per_epoch} per epoch)"
        )
        self._reset_window()
        self._started = time.perf_counter()
        self.stopped_early = False
        stop = GracefulStop(defer=not ctx.distributed)
        try:
            with stop:
                while self.step < self.total_steps:
                    self.loader.sampler.set_epoch(self.epoch)
                    for images in self.loader:
                        with stop.iteration():
                            self._iteration(images)
                        if self.step >= self.total_steps or self._out_of_time():
                            break
                    if self.stopped_early:
                        break
                if self.metrics is not None and self.metrics.last_step != self.step:
                    self._measure()  # the final generator is always scored
                self._finish_checks()
                final = self._checkpoint(final=True)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            # one process, stopped at a whole step: save it (several processes would have to agree on the step)
            saved = self._save_at_stop() if stop.at_whole_step and not ctx.distributed else None
            self._log_quietly("interrupted", step=self.step, signal=SIGNAL_NAMES[signum], saved=str(saved or ""))
            kept = f"its state there is saved as {saved}" if saved else self._kept()
            stopped = Interrupted(
                f"training stopped at step {self.step} ({SIGNAL_NAMES[signum]}); {kept}: continue with the same "
                f"command and --resume auto (--out {self.run_dir})"
            )
            stopped.exit_code = 128 + signum  # as the shell reports a process that the signal ended
            raise stopped from None
        except OutputError as e:
            self._log_quietly("error", step=self.step, message=str(e))
            raise OutputError(
                f"{e}; training stopped at step {self.step} and {self._kept()}: free space, then continue with "
                f"the same command and --resume auto (--out {self.run_dir})"
            ) from None
        except WaveDiffError as e:
            self._log_quietly("error", step=self.step, message=str(e))
            raise
        except Exception as e:
            if not (ctx.distributed and is_peer_failure(e)):
                raise
            self._log_quietly("error", step=self.step, message=str(e))
            raise PeerLost(
                f"lost contact with another training process at step {self.step} ({first_line(e, 120)}): a node "
                f"or process died, or stopped answering within --dist-timeout; {self._kept()}: start every node "
                f"again with --resume auto"
            ) from None
        finally:
            self.log.close()
        return final

    def _save_at_stop(self) -> Path | None:
        """The training state of the current step after a stop: saved now, or the one saved at this very step;
        None if there is nothing to save or it cannot be saved (a NaN loss, a full disk: `_kept()` then says
        what is left)."""
        if self.step == 0:
            return None
        existing = state_path(self.run_dir, self.step)
        if existing.is_file():
            return existing
        try:
            self._checkpoint(final=False)
        except (WaveDiffError, OSError):
            return None
        return existing

    def _kept(self) -> str:
        last = latest_state(self.run_dir)
        return f"the last checkpoint {last} is intact" if last else "no checkpoint had been written yet"

    def _log_quietly(self, event: str, **fields) -> None:
        """A log record on the way out of a failed run; a log that cannot be written (full disk) is not news."""
        try:
            self.log.event(event, **fields)
        except OSError:
            pass

    def _set_aside_unreadable(self) -> None:
        """Rank 0: report the unreadable states `--resume auto` skipped, and rename them out of the way."""
        if not self.unreadable_states:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path, reason in self.unreadable_states:
            kept = set_aside(path)
            print(
                f"warning: skipped an unreadable training state ({reason.split('; ')[0]}); it is kept as "
                f"{kept.name} and the run continues from {self.resumed_from}",
                file=sys.stderr,
            )

    def _iteration(self, images: torch.Tensor) -> None:
        tc = self.cfg.train
        x0 = images.to(self.device, non_blocking=True)
        if self.cfg.space == "wavelet":
            x0 = image_to_wavelet(x0)
        r1 = self.step % tc.lazy_reg == 0
        d, g = self.iterate(x0, r1)
        self.step += 1
        self.batch_in_epoch += 1
        if self.ema is not None:
            self.ema_beta = self.ema.update(self.nets.G, self.step * self.global_batch, self.global_batch)
        losses = torch.stack([d["d_real"], d["d_fake"], d["r1"], g["g_adv"], g["g_rec"]])
        self._sums += losses
        bad = ~torch.isfinite(losses).all() & (self._first_bad < 0)
        self._first_bad = torch.where(bad, self.step, self._first_bad)
        self._window_steps += 1
        self._window_r1 += int(r1 and tc.r1_gamma > 0)
        if self.batch_in_epoch == self.batches_per_epoch:
            self._end_epoch()
        self.log.advance()
        if self.step % tc.log_every == 0 or self.step == self.total_steps:
            self._log_window()
        if tc.sample_every and self.step % tc.sample_every == 0 and self.step < self.total_steps:
            if self.ctx.is_main:
                self._save_samples()
        if self.metrics is not None and self.metrics.due(self.step) and self.step < self.total_steps:
            self._measure()
        if self.step % tc.checkpoint_every == 0 and self.step < self.total_steps:
            self._checkpoint(final=False)

    def _out_of_time(self) -> bool:
        """True (on every rank) once `train.max_minutes` of wall time have passed in this process."""
        budget = self.cfg.train.max_minutes
        if budget <= 0:
            return False
        over = self._train_seconds() > budget * 60
        if self.ctx.distributed:  # every rank stops at the same step; one process needs no tensor (or GPU sync)
            over = bool(self.ctx.all_reduce(torch.tensor(float(over), device=self.device), "max"))
        self.stopped_early = over
        if self.stopped_early:
            if self._window_steps:
                self._log_window()
            self.log.event("time_limit", step=self.step, max_minutes=budget)
            self.log.write(f"stopping at step {self.step}: the {budget:g}-minute budget is spent")
        return self.stopped_early

    def _train_seconds(self) -> float:
        """Wall time of this invocation, less the time spent on metrics."""
        return time.perf_counter() - self._started - (self.metrics.seconds if self.metrics is not None else 0.0)

    def _measure(self) -> None:
        G = self.ema.module if self.ema is not None else self.nets.G
        meta = {"epoch": self.epoch, "kimg": self.step * self.global_batch / 1000}
        self.metrics.measure(G, self.step, self._train_seconds(), meta)

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.cfg.train.lr_decay and self.sched_g.last_epoch < self.num_epochs:
            self.sched_g.step()
            self.sched_d.step()

    # ------------------------------------------------------------------ records
    def _reset_window(self) -> None:
        self._sums = torch.zeros(len(LOSS_NAMES), device=self.device)
        self._first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._window_steps = self._window_r1 = 0
        self._window_start = (time.perf_counter(), self.step)

    def _check_finite(self) -> None:
        """Stop (on every rank) if any loss since the last check was NaN or inf."""
        first = torch.where(self._first_bad < 0, torch.iinfo(torch.int64).max, self._first_bad)
        first = int(self.ctx.all_reduce(first.clone(), "min"))
        if first != torch.iinfo(torch.int64).max:
            last = latest_state(self.run_dir)
            fix = "lower learning rates (--set train.lr_g=... --set train.lr_d=...) or --precision fp32"
            if last:
                advice = f"the last good checkpoint {last} is kept; resume from it (--resume {last}) with {fix}"
            else:
                advice = f"no checkpoint had been written yet; start again in a new --out with {fix}"
            raise WaveDiffError(f"a loss became NaN or inf at step {first}; training stopped; {advice}")

    def _log_window(self) -> None:
        self._check_finite()
        n = max(self._window_steps, 1)
        sums = self.ctx.all_reduce(self._sums.clone()) / self.ctx.world_size
        mean = dict(zip(LOSS_NAMES, sums.tolist()))
        mean = {k: v / (max(self._window_r1, 1) if k == "r1" else n) for k, v in mean.items()}
        elapsed = time.perf_counter() - self._window_start[0]
        done = self.step - self._window_start[1]
        values = {
            "epoch": self.epoch,
            "kimg": self.step * self.global_batch / 1000,
            "loss_d": mean["loss_d_real"] + mean["loss_d_fake"],
            "loss_g": mean["loss_g_adv"] + mean["loss_rec"],
            **mean,
            "lr_g": self.opt_g.param_groups[0]["lr"],
            "lr_d": self.opt_d.param_groups[0]["lr"],
            "ema_decay": self.ema_beta,
            "sec_per_step": elapsed / max(done, 1),
            "images_per_s": done * self.global_batch / max(elapsed, 1e-9),
        }
        self.log.scalars(self.step, values)
        self._reset_window()

    def _save_samples(self) -> Path:
        G = self.ema.module if self.ema is not None else self.nets.G
        seeds = list(SAMPLE_SEEDS)
        images = np.concatenate(
            [to_uint8(sample(G, seeds[i : i + 16], self.cfg, self.device)) for i in range(0, len(seeds), 16)]
        )
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        atomic_write(path, lambda tmp: Image.fromarray(_grid(images, 8)).save(tmp, format="PNG"))
        return path

    # ------------------------------------------------------------------ checkpoints
    def _finish_checks(self) -> None:
        self._check_finite()
        hashes = self.ctx.all_gather_object({"G": _weights_hash(self.nets.G), "D": _weights_hash(self.nets.D)})
        self.log.event("weights", step=self.step, sha256_per_rank=hashes, identical=all(h == hashes[0] for h in hashes))
        if self.graphed is not None:
            g = self.graphed
            self.log.event("cuda_graphs", captures=g.captures, replays=g.replays, eager=sum(g.eager_runs.values()))

    def _checkpoint(self, final: bool) -> Path:
        """Save the training state and the EMA generator (rank 0); returns the generator path."""
        self._check_finite()
        rngs = self.ctx.all_gather_object(capture_rng(self.rng))
        gen_file = generator_path(self.run_dir, None if final else self.step)
        if not self.ctx.is_main:
            return gen_file
        state = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "config": self.cfg.to_dict(),
            "G": self.nets.G.state_dict(),
            "D": self.nets.D.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "rng": rngs,
        }
        if self.metrics is not None:
            state["metrics"] = self.metrics.state_dict(self._train_seconds())
        atomic_torch_save(state, state_path(self.run_dir, self.step))
        G = self.ema.module if self.ema is not None else self.nets.G
        meta = {"step": self.step, "epoch": self.epoch, "kimg": self.step * self.global_batch / 1000}
        save_generator(generator_path(self.run_dir, self.step), G, self.cfg, meta)
        if final:
            save_generator(gen_file, G, self.cfg, meta)
            self._save_samples()
        prune(self.run_dir, self.cfg.train.keep_last)
        self.log.event(
            "checkpoint",
            step=self.step,
            state=str(state_path(self.run_dir, self.step)),
            generator=str(gen_file),
            final=final,
        )
        return gen_file


def _cosine(base: float, epoch: int, horizon: int) -> float:
    return ETA_MIN + (base - ETA_MIN) * (1 + math.cos(math.pi * epoch / horizon)) / 2


def _grid(images: np.ndarray, ncol: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> one [rows*H, ncol*W, 3] image (missing cells black)."""
    n, h, w, c = images.shape
    rows = math.ceil(n / ncol)
    cells = np.zeros((rows * ncol, h, w, c), np.uint8)
    cells[:n] = images
    return cells.reshape(rows, ncol, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, ncol * w, c)


def _weights_hash(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checkpoint_files(run_dir: Path) -> str:
    """What a run left in `run_dir`'s checkpoints folder ("" when nothing), for the refusal to start over it."""
    folder = checkpoint_dir(run_dir)
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".pt", ".safetensors")) if folder.is_dir() else []
    return f"{len(names)} checkpoint file(s) in {folder}, e.g. {names[-1]}" if names else ""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} ({e}); choose a new --out") from None
