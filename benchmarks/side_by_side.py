"""Side by side: our sampler and training iteration against the authors' code, in the same run.

    git clone https://github.com/VinAIResearch/WaveDiff /path/to/WaveDiff   # theirs, never vendored here
    pip install einops pytorch_wavelets                                      # their two extra imports
    python benchmarks/side_by_side.py --authors-repo /path/to/WaveDiff [--presets cifar10 stl10 celeba_256]

For each preset: their seeded initialisation, perturbed so outputs are not ~0,
is saved in their released format; both codes load those same weights (ours
through our converter); a check process runs both samplers on the same noise
and requires the images to agree to 1e-4 (fp32), so equal work is timed.
Then `--rounds` pairs of fresh processes, alternating which code goes first,
each time full sampling (T generator calls + posterior + inverse wavelet
transform) at every batch and one training iteration (D step with and
without the lazy R1 penalty, G step, EMA; both codes in one process, no DDP),
and report the median over rounds of each process's median. Both get the
same environment: `--threads` CPU threads, denormals flushed,
a bounded OpenMP spin and large blocks kept in glibc's heap (what `wavediff`
sets: wavediff/runtime.py), unless `--as-shipped` leaves the authors' process
as their code runs by itself. On a GPU the clock is CUDA
events, as in the paper's protocol. Ratios > 1 mean we are faster.

"ours" is timed in fp32 and at our default sampling precision (`--precision
auto`: bf16 on CPUs with native bf16 and on GPUs that support it). On a CPU fp32
sampling runs its wide 3x3 convolutions as Winograd (F(4x4) or F(2x2)) by default, so
it is also timed with direct convolutions only (`--no-winograd`): the arithmetic
the GFLOP/s figure counts, and what the equality check runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from wavediff.devices import machine_name  # noqa: E402
from wavediff.runtime import OMP_SPINCOUNT  # noqa: E402 (the OpenMP spin `wavediff` sets in its processes)

PRESETS = HERE.parent / "tests" / "data" / "reference" / "presets"
TOLERANCE = 1e-4


# ----------------------------------------------------------------------------- helpers shared by workers
def _authors(opts):
    sys.path.insert(0, str(HERE))
    import authors_code

    authors = authors_code.load(opts.authors_repo, cuda_ops=opts.authors_cuda_ops)
    argv = json.loads((PRESETS / f"{opts.preset}.json").read_text())["argv"]
    return authors_code, authors, authors_code.training_args(opts.authors_repo, argv)


def _timer(device: torch.device):
    """seconds(fn): one call of fn, timed with CUDA events on a GPU, perf_counter on the CPU."""
    if device.type == "cuda":

        def seconds(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1000.0

    else:

        def seconds(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

    return seconds


def _median(fn, seconds, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(seconds(fn) for _ in range(reps))


def _batches(opts, image_size: int) -> list[int]:
    """The sampling batches; the paper's 100 becomes 25 at 512 and 1024 px, as in its protocol."""
    return [25 if b == 100 and image_size >= 512 else b for b in opts.batches]


def _our_config(preset: str):
    from wavediff.presets import get_preset

    return get_preset(preset)


def _our_nets(opts, device):
    from wavediff.checkpoints.convert import load_official_generator_with_config
    from wavediff.checkpoints.official import read_official_state_dict
    from wavediff.checkpoints.official_discriminator import convert_discriminator_state
    from wavediff.models.discriminator import build_discriminator

    cfg = _our_config(opts.preset)
    G = load_official_generator_with_config(Path(opts.dir) / "netG.pth", cfg, device)
    D = build_discriminator(cfg.discriminator)
    D.load_state_dict(convert_discriminator_state(read_official_state_dict(Path(opts.dir) / "netD.pth", "D"), cfg))
    return cfg, G, D.to(device)


# ----------------------------------------------------------------------------- workers
def worker_init(opts) -> dict:
    """Their seeded initialisation, perturbed, saved in the released format (keys prefixed `module.`)."""
    _, authors, args = _authors(opts)
    torch.manual_seed(0)
    G, D = authors_build(authors, args)
    out = {}
    for name, net in (("netG", G), ("netD", D)):
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, Path(opts.dir) / f"{name}.pth")
        out[name] = sum(p.numel() for p in net.parameters())
    return out


def authors_build(authors, args):
    sys.path.insert(0, str(HERE))
    import authors_code

    return authors_code.build_generator(authors, args), authors_code.build_discriminator(authors, args)


def worker_check(opts) -> dict:
    """Both samplers on the same noise (global RNG, same draw order), fp32: max image difference."""
    from wavediff.diffusion import VPDiffusion
    from wavediff.wavelets import idwt, reorder_bands

    device = torch.device(opts.device)
    # equal work means equal arithmetic: true fp32 on both sides (PyTorch lets cuDNN use TF32 by default)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    authors_code, authors, args = _authors(opts)
    theirs = authors_code.build_generator(authors, args)
    state = torch.load(Path(opts.dir) / "netG.pth", map_location="cpu", weights_only=True)
    theirs.load_state_dict({k[len("module.") :]: v for k, v in state.items()}, strict=True)
    theirs = theirs.to(device).eval()
    cfg, ours, _ = _our_nets(opts, device)
    _, to_image = authors_code.wavelet_transforms(authors, args, device)
    T = authors.diffusion.get_time_schedule(args, device)
    coeff = authors.diffusion.Posterior_Coefficients(args, device)
    x_T = torch.randn(2, cfg.data_channels, cfg.data_resolution, cfg.data_resolution, device=device)
    # their network and noise live in their training band order; ours runs in the same frame for the check
    order = cfg.generator.band_order

    def ours_in_their_frame(x, t, z):
        return reorder_bands(ours(reorder_bands(x, order, "pywt"), t, z), "pywt", order)

    with torch.no_grad():
        torch.manual_seed(5)
        img_theirs = to_image(authors.diffusion.sample_from_model(coeff, theirs, args.num_timesteps, x_T, T, args) * 2)
        torch.manual_seed(5)
        x = VPDiffusion(cfg.diffusion, device).sample(ours_in_their_frame, x_T, cfg.generator.nz)
        img_ours = idwt(reorder_bands(x, order, "pywt") * 2) if cfg.space == "wavelet" else x
    diff = (img_theirs.clamp(-1, 1) - img_ours.clamp(-1, 1)).abs().max().item()
    return {"max_abs_image_diff": diff, "image_range": [img_ours.min().item(), img_ours.max().item()]}


def worker_time(opts) -> dict:
    device = torch.device(opts.device)
    seconds = _timer(device)
    if opts.code == "ours":
        return _time_ours(opts, device, seconds)
    return _time_theirs(opts, device, seconds)


def _time_ours(opts, device, seconds) -> dict:
    from wavediff.diffusion import VPDiffusion
    from wavediff.fastpath import FastPath, resolve_precision
    from wavediff.runtime import configure_training_device
    from wavediff.timing import sampler_pass
    from wavediff.training.ema import EMA
    from wavediff.training.graphs import GraphedTrainStep
    from wavediff.training.step import Nets, TrainStep
    from wavediff.wavelets import image_to_wavelet

    cfg, G, D = _our_nets(opts, device)
    auto = resolve_precision("auto", device)
    out = {"sample": {}, "train": {}, "default_precision": auto}
    out["gflop_per_image"] = _sampling_gflop(G, cfg, device)
    out["peak_gflops"] = {p: _peak_gflops(device, p, seconds) for p in dict.fromkeys(("fp32", auto))}
    gpu = device.type == "cuda"
    # on a GPU also "tf32": fp32 with TF32 convolutions, the arithmetic the authors' code gets by default
    precisions = dict.fromkeys(("fp32", auto, *(("tf32",) if gpu else ())))
    out["precisions"] = list(precisions)
    for b in _batches(opts, cfg.image_size):
        for precision in precisions:
            fn = sampler_pass(G, cfg, b, device, precision)
            out["sample"][f"{precision}/{b}"] = _median(fn, seconds, opts.warmup, opts.reps)
        if not gpu:  # fp32 with the direct convolutions only (the CPU's fp32 default adds Winograd's)
            direct = sampler_pass(G, cfg, b, device, FastPath(precision="fp32", winograd=False))
            out["sample"][f"direct/{b}"] = _median(direct, seconds, opts.warmup, opts.reps)
        else:  # the GPU fast path: CUDA graphs at the default precision (NCHW: faster there)
            fast = FastPath(precision=auto, cuda_graphs=True)
            out["sample"][f"fast/{b}"] = _median(sampler_pass(G, cfg, b, device, fast), seconds, opts.warmup, opts.reps)
        if opts.sample_compile:  # compiled at the default precision (each batch size compiles in the warm-up)
            fast = FastPath(precision=auto, cuda_graphs=gpu, compile=True)
            once = sampler_pass(G, cfg, b, device, fast)
            out["sample"][f"fast_compile/{b}"] = _median(once, seconds, max(1, opts.warmup), opts.reps)
    if not opts.train_batches:
        return out
    configure_training_device(device)  # as `wavediff train` does (cuDNN autotuning on CUDA)
    G.train().requires_grad_(True)
    D.train()
    tc = cfg.train
    adam = dict(betas=(tc.beta1, tc.beta2), fused=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=tc.lr_g, **adam)
    opt_d = torch.optim.Adam(D.parameters(), lr=tc.lr_d, **adam)
    rng = torch.Generator(device).manual_seed(0)
    diffusion = VPDiffusion(cfg.diffusion, device)
    ema = EMA(G, tc.ema_decay)

    # fp32 (the authors' arithmetic) and, where bf16 is native, `wavediff train --precision bf16` (autocast);
    # with --train-compile also fp32 with `train.compile=true` (the R1 pass stays eager, as in the trainer)
    def train_step(nets: Nets, precision: str) -> TrainStep:
        step = TrainStep(nets, opt_g, opt_d, diffusion, cfg, rng, device)
        step.precision = precision
        return step

    steps = {p: train_step(Nets(G, D, G, D, G, D), p) for p in dict.fromkeys(("fp32", auto))}
    if opts.train_compile:
        Gc, Dc = torch.compile(G, dynamic=False), torch.compile(D, dynamic=False)  # as the trainer does
        steps["compile"] = train_step(Nets(G, D, Gc, Dc, Gc, Dc), "fp32")
    if gpu:  # `wavediff train --cuda-graphs`, fp32: each iteration replayed from a CUDA graph
        steps["graphs"] = GraphedTrainStep(train_step(Nets(G, D, G, D, G, D), "fp32"))
    out["train_precisions"] = list(steps)
    for b in opts.train_batches:
        images = torch.rand(b, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1
        for name, step in steps.items():
            for r1 in (True, False):

                def iteration():
                    x0 = image_to_wavelet(images) if cfg.space == "wavelet" else images
                    step.iteration(x0, r1)
                    ema.update(G, b, b)

                key = f"{name}/{'r1' if r1 else 'no_r1'}/{b}"
                if name == "compile":  # the first iteration compiles; its time is reported apart
                    t0 = time.perf_counter()
                    iteration()
                    out["train"][f"first/{key}"] = time.perf_counter() - t0
                # graphs: the eager warm-up iterations of each kind, then its capture, are not timed
                warmup = GraphedTrainStep.WARMUP + 1 if name == "graphs" else 1
                out["train"][key] = _median(iteration, seconds, warmup, opts.reps)
    return out


def _sampling_gflop(G, cfg, device) -> float:
    """FLOPs of the T generator calls for one image (multiply-add = 2), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    res = cfg.data_resolution
    x, z = torch.zeros(1, cfg.data_channels, res, res, device=device), torch.zeros(1, cfg.generator.nz, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        G(x, torch.zeros(1, dtype=torch.int64, device=device), z)
    return counter.get_total_flops() * cfg.diffusion.num_timesteps / 1e9


def _peak_gflops(device, precision: str, seconds) -> float:
    """The practical peak the sampler is compared with: the faster of a large matrix product and a large 3x3
    convolution (the sampler's main operator). On AMD CPUs the convolution wins by 2x: PyTorch's fp32 matrix
    products go through MKL, which runs its AVX2 kernels there, while convolutions go through oneDNN's AVX-512
    ones (2-core EPYC: 200 against 460 GFLOP/s)."""
    import torch.nn.functional as F

    from wavediff.fastpath import PRECISIONS

    dtype, gpu = PRECISIONS[precision], device.type == "cuda"
    n = 4096 if gpu else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    matmul = 2 * n**3 / _median(lambda: a @ a, seconds, 2, 5)
    batch, ch, res = (128, 512, 32) if gpu else (16, 256, 16)
    x = torch.randn(batch, ch, res, res, device=device, dtype=dtype)
    w = torch.randn(ch, ch, 3, 3, device=device, dtype=dtype)
    conv = 2 * batch * ch * ch * 9 * res * res / _median(lambda: F.conv2d(x, w, padding=1), seconds, 2, 5)
    return max(matmul, conv) / 1e9


def _time_theirs(opts, device, seconds) -> dict:
    import torch.nn.functional as F

    authors_code, authors, args = _authors(opts)
    G, D = authors_code.build_generator(authors, args), authors_code.build_discriminator(authors, args)
    state = torch.load(Path(opts.dir) / "netG.pth", map_location="cpu", weights_only=True)
    G.load_state_dict({k[len("module.") :]: v for k, v in state.items()}, strict=True)
    state = torch.load(Path(opts.dir) / "netD.pth", map_location="cpu", weights_only=True)
    D.load_state_dict({k[len("module.") :]: v for k, v in state.items()}, strict=True)
    G, D = G.to(device).eval(), D.to(device)
    to_bands, to_image = authors_code.wavelet_transforms(authors, args, device)
    dif = authors.diffusion
    T = dif.get_time_schedule(args, device)
    pos_coeff = dif.Posterior_Coefficients(args, device)
    out = {"sample": {}, "train": {}}
    for b in _batches(opts, args.ori_image_size):
        x_T = torch.randn(b, args.num_channels, args.image_size, args.image_size, device=device)

        @torch.no_grad()
        def once():
            return to_image(dif.sample_from_model(pos_coeff, G, args.num_timesteps, x_T, T, args) * 2.0)

        out["sample"][f"fp32/{b}"] = _median(once, seconds, opts.warmup, opts.reps)
    if not opts.train_batches:
        return out
    G.train()
    coeff = dif.Diffusion_Coefficients(args, device)
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2))
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2))
    opt_g = authors.EMA(opt_g, ema_decay=args.ema_decay) if args.use_ema else opt_g
    for b in opts.train_batches:
        images = torch.rand(b, 3, args.ori_image_size, args.ori_image_size, device=device) * 2 - 1
        for r1 in (True, False):

            def iteration():
                # their iteration, step for step (train_wddgan.py), with the same calls
                D.requires_grad_(True)
                D.zero_grad()
                G.requires_grad_(False)
                real = to_bands(images) / 2.0
                t = torch.randint(0, args.num_timesteps, (b,), device=device)
                x_t, x_tp1 = dif.q_sample_pairs(coeff, real, t)
                x_t.requires_grad = True
                d_real = D(x_t, t, x_tp1.detach()).view(-1)
                F.softplus(-d_real).mean().backward(retain_graph=True)
                if r1:
                    (grad,) = torch.autograd.grad(outputs=d_real.sum(), inputs=x_t, create_graph=True)
                    (args.r1_gamma / 2 * (grad.view(b, -1).norm(2, dim=1) ** 2).mean()).backward()
                z = torch.randn(b, args.nz, device=device)
                x_pos = dif.sample_posterior(pos_coeff, G(x_tp1.detach(), t, z), x_tp1, t)
                F.softplus(D(x_pos, t, x_tp1.detach()).view(-1)).mean().backward()
                opt_d.step()
                D.requires_grad_(False)
                G.requires_grad_(True)
                G.zero_grad()
                t = torch.randint(0, args.num_timesteps, (b,), device=device)
                x_t, x_tp1 = dif.q_sample_pairs(coeff, real, t)
                z = torch.randn(b, args.nz, device=device)
                x0_pred = G(x_tp1.detach(), t, z)
                x_pos = dif.sample_posterior(pos_coeff, x0_pred, x_tp1, t)
                err = F.softplus(-D(x_pos, t, x_tp1.detach()).view(-1)).mean()
                if args.rec_loss:
                    err = err + F.l1_loss(x0_pred, real)
                err.backward()
                opt_g.step()

            out["train"][f"{'r1' if r1 else 'no_r1'}/{b}"] = _median(iteration, seconds, 1, opts.reps)
    return out


WORKERS = {"init": worker_init, "check": worker_check, "time": worker_time}


# ----------------------------------------------------------------------------- parent
def _env(opts, code: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"), env.get("PYTHONPATH")]))
    shipped = opts.as_shipped and code == "authors"
    if shipped:
        env.pop("GOMP_SPINCOUNT", None)
    else:
        env.setdefault("GOMP_SPINCOUNT", OMP_SPINCOUNT)
    env["SIDE_BY_SIDE_FLUSH_DENORMAL"] = "0" if shipped else "1"
    return env


def _run(opts, worker: str, preset: str, workdir: str, code: str = "ours") -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--code", code, "--preset", preset, "--dir", workdir]
    cmd += ["--authors-repo", str(opts.authors_repo), "--device", opts.device, "--threads", str(opts.threads)]
    cmd += ["--warmup", str(opts.warmup), "--reps", str(opts.reps), "--batches", *map(str, opts.batches)]
    cmd += ["--train-batches", *map(str, opts.train_batches)]  # also when empty: the worker's default is not []
    if opts.authors_cuda_ops:
        cmd.append("--authors-cuda-ops")
    if opts.train_compile:
        cmd.append("--train-compile")
    if opts.sample_compile:
        cmd.append("--sample-compile")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(opts, code))
    print(f"  [{worker} worker, {code}, {preset}: {time.perf_counter() - t0:.0f} s]", flush=True)
    if proc.returncode != 0:
        missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", proc.stderr)
        if missing:  # the authors' code imports what our package does not need
            sys.exit(
                f"error: the {worker} worker ({code}, {preset}) cannot import {missing.group(1)}: "
                f"pip install einops PyWavelets pytorch_wavelets (the authors' code needs them)"
            )
        sys.exit(f"error: the {worker} worker ({code}, {preset}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(opts) -> dict:
    report = {
        "machine": machine_name(torch.device(opts.device)),
        "torch": torch.__version__,
        "threads": opts.threads,
        "presets": {},
    }
    report["settings"] = {k: v for k, v in vars(opts).items() if k not in ("worker", "code", "dir", "preset")}
    report["settings"]["authors_repo"] = str(opts.authors_repo)
    print(f"machine: {report['machine']}; torch {torch.__version__}; device {opts.device}; {opts.threads} threads")
    print(f"{opts.rounds} rounds of fresh processes (order alternating), median of medians; ratio > 1: ours faster")

    def save() -> None:  # after every worker and preset: a run cut short keeps what it measured
        if opts.json:
            Path(opts.json).write_text(json.dumps(report, indent=1))

    for preset in opts.presets:
        with tempfile.TemporaryDirectory() as workdir:
            _run(opts, "init", preset, workdir, "authors")
            check = _run(opts, "check", preset, workdir)
            ok = check["max_abs_image_diff"] <= TOLERANCE
            print(f"\n{preset}: same weights, same noise -> max image difference {check['max_abs_image_diff']:.2e}")
            if not ok:
                sys.exit(f"error: {preset}: the codes disagree by more than {TOLERANCE}; timing them is pointless")
            rounds = {"ours": [], "authors": []}
            for r in range(opts.rounds):
                for code in ("authors", "ours") if r % 2 == 0 else ("ours", "authors"):
                    rounds[code].append(_run(opts, "time", preset, workdir, code))
                    report["presets"][preset] = {"check": check, "partial_rounds": rounds}
                    save()
        report["presets"][preset] = _summarise(preset, check, rounds)
        save()
    if opts.json:
        print(f"\nwrote {opts.json}")
    return report


def _summarise(preset: str, check: dict, rounds: dict) -> dict:
    def med(code, part, key):
        return statistics.median(r[part][key] for r in rounds[code])

    auto = rounds["ours"][0]["default_precision"]
    gflop = rounds["ours"][0]["gflop_per_image"]
    peak = {p: statistics.median(r["peak_gflops"][p] for r in rounds["ours"]) for p in rounds["ours"][0]["peak_gflops"]}
    rows = {"check": check, "default_precision": auto, "gflop_per_image": gflop, "peak_gflops": peak}
    rows.update(sample={}, train={}, rounds=rounds)  # the raw rounds too: every figure the medians came from
    # "default": what `wavediff sample` runs with no flags here (bf16 where native; else fp32, the same column twice)
    print(f"{'case':<38}{'authors (s)':>12}{'ours fp32':>11}{'ratio':>7}{'default ' + auto:>14}{'ratio':>7}")
    for key in rounds["authors"][0]["sample"]:
        b = key.split("/")[1]
        theirs, ours32 = med("authors", "sample", key), med("ours", "sample", key)
        ours_auto = med("ours", "sample", f"{auto}/{b}")
        rows["sample"][b] = {"authors": theirs, "ours_fp32": ours32, f"ours_{auto}": ours_auto}
        fast, direct = "", ours32
        if f"direct/{b}" in rounds["ours"][0]["sample"]:  # (CPU) fp32 without Winograd: the arithmetic counted
            rows["sample"][b]["ours_fp32_direct"] = direct = med("ours", "sample", f"direct/{b}")
            fast += f"   direct convolutions (--no-winograd): {direct:.4f} s, {theirs / direct:.2f}x"
        achieved = gflop * int(b) / direct
        rows["sample"][b]["ours_fp32_gflops"] = achieved
        if f"tf32/{b}" in rounds["ours"][0]["sample"]:
            rows["sample"][b]["ours_tf32"] = t = med("ours", "sample", f"tf32/{b}")
            fast += f"   tf32: {t:.4f} s, {theirs / t:.2f}x"
        if f"fast/{b}" in rounds["ours"][0]["sample"]:
            rows["sample"][b]["ours_fast"] = t = med("ours", "sample", f"fast/{b}")
            fast += f"   fast path (+CUDA graphs): {t:.4f} s, {theirs / t:.2f}x"
        if f"fast_compile/{b}" in rounds["ours"][0]["sample"]:
            rows["sample"][b]["ours_fast_compile"] = t = med("ours", "sample", f"fast_compile/{b}")
            fast += f"   compiled: {t:.4f} s, {theirs / t:.2f}x"
        print(
            f"{'sampling, batch ' + b:<38}{theirs:>12.4f}{ours32:>11.4f}{theirs / ours32:>6.2f}x"
            f"{ours_auto:>14.4f}{theirs / ours_auto:>6.2f}x   fp32, direct: {achieved:.0f} GFLOP/s, "
            f"{achieved / peak['fp32']:.0%} of the peak{fast}"
        )
    print(
        f"  ({gflop:.1f} GFLOP per image over the T steps; peak here (large matmul or 3x3 convolution): "
        + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peak.items())
        + ")"
    )
    for key in rounds["authors"][0]["train"]:
        r1, b = key.split("/")
        theirs, ours = med("authors", "train", key), med("ours", "train", f"fp32/{key}")
        rows["train"][key] = {"authors": theirs, "ours_fp32": ours}
        label = f"train iteration, batch {b}, {'with' if r1 == 'r1' else 'without'} R1"
        line = f"{label:<38}{theirs:>12.4f}{ours:>11.4f}{theirs / ours:>6.2f}x"
        if auto != "fp32" and f"{auto}/{key}" in rounds["ours"][0]["train"]:
            rows["train"][key][f"ours_{auto}"] = low = med("ours", "train", f"{auto}/{key}")
            line += f"{low:>14.4f}{theirs / low:>6.2f}x   (train --precision {auto}: autocast, fp32 weights)"
        if f"compile/{key}" in rounds["ours"][0]["train"]:
            rows["train"][key]["ours_compile"] = c = med("ours", "train", f"compile/{key}")
            rows["train"][key]["ours_compile_first_s"] = first = med("ours", "train", f"first/compile/{key}")
            line += f"   train.compile=true: {c:.4f} s, {theirs / c:.2f}x (first iteration {first:.0f} s)"
        if f"graphs/{key}" in rounds["ours"][0]["train"]:
            rows["train"][key]["ours_cuda_graphs"] = c = med("ours", "train", f"graphs/{key}")
            line += f"   --cuda-graphs (fp32): {c:.4f} s, {theirs / c:.2f}x"
        print(line)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors-repo", type=Path, required=True, help="a local checkout of VinAIResearch/WaveDiff")
    ap.add_argument("--presets", nargs="+", default=["cifar10", "stl10", "celeba_256"])
    ap.add_argument("--batches", nargs="+", type=int, help="sampling batches (CPU: 1 8; GPU: 1 8 100)")
    ap.add_argument("--train-batches", nargs="*", type=int, help="training batches (CPU: 8; GPU: 32)")
    ap.add_argument(
        "--train-compile", action="store_true", help="also time our training iteration with train.compile=true"
    )
    ap.add_argument(
        "--sample-compile",
        action="store_true",
        help="also time our default sampler compiled (--compile; on a GPU with CUDA graphs): each batch size "
        "compiles for a minute or so",
    )
    ap.add_argument("--rounds", type=int, default=5, help="pairs of fresh processes (>= 5 for the README)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions in each process")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both codes")
    ap.add_argument(
        "--as-shipped", action="store_true", help="authors without denormal flush, OpenMP spin cap and malloc tuning"
    )
    ap.add_argument("--authors-cuda-ops", action="store_true", help="let their code JIT-build its CUDA ops")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--code", default="ours", help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    gpu = opts.device.startswith("cuda")
    if opts.batches is None:
        opts.batches = [1, 8, 100] if gpu else [1, 8]
    if opts.train_batches is None:
        opts.train_batches = [32] if gpu else [8]
    if opts.worker:
        torch.set_num_threads(opts.threads)
        if os.environ.get("SIDE_BY_SIDE_FLUSH_DENORMAL", "1") == "1":  # what `wavediff` sets, given to both codes
            from wavediff.runtime import configure_allocator

            torch.set_flush_denormal(True)
            configure_allocator()
        print(json.dumps(WORKERS[opts.worker](opts)))
        return
    if not (opts.authors_repo / "train_wddgan.py").is_file():
        sys.exit(
            f"error: {opts.authors_repo} is not a checkout of the authors' WaveDiff (no train_wddgan.py); "
            "git clone https://github.com/VinAIResearch/WaveDiff and pass its path"
        )
    check_options(opts)
    # SIGTERM (timeout, a batch scheduler) stops like Ctrl-C: the running worker is killed by subprocess.run and the
    # temporary folder of weights (100+ MB) removed, instead of both outliving this process
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        compare(opts)
    except KeyboardInterrupt:
        sys.exit(
            f"interrupted: stopped by a signal{'; ' + opts.json + ' holds the rounds finished' if opts.json else ''}"
        )


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def check_options(opts) -> None:
    """One line, before any worker runs, for what would otherwise fail minutes into the comparison."""
    if unknown := [p for p in opts.presets if not (PRESETS / f"{p}.json").is_file()]:
        have = sorted(p.stem for p in PRESETS.glob("*.json"))
        sys.exit(f"error: no reference arguments for preset(s) {', '.join(unknown)}; choose from {', '.join(have)}")
    for name in ("rounds", "reps"):
        if getattr(opts, name) < 1:
            sys.exit(f"error: --{name} must be at least 1, got {getattr(opts, name)}")
    if opts.warmup < 0 or min(opts.batches + opts.train_batches, default=1) < 1:
        sys.exit("error: --warmup must be >= 0 and every batch >= 1")
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"error: --device {opts.device}, but torch {torch.__version__} sees no CUDA device; use --device cpu")
    if opts.json:
        out = Path(opts.json)
        if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
            sys.exit(f"error: cannot write --json {out}: give a file in an existing, writable folder")


if __name__ == "__main__":
    main()
