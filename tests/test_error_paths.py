"""Every command's error paths, table-driven: a missing GPU or unknown device, an output that
cannot be written, a full disk, zero or negative counts, a file of the wrong kind. Each ends in
one line naming the problem and the fix, a non-zero exit, no traceback and nothing half-written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wavediff
from conftest import FIXTURES
from wavediff.cli import COMMANDS, main

NETG = FIXTURES / "tiny_wavelet_netG.pth"
NETD = FIXTURES / "tiny_disc_small_netD.pth"
ARGS = FIXTURES / "tiny_wavelet_config.json"
PROGRESS = re.compile(r"^[\w ]*:\s+\d+%\|")  # a progress bar (work done before a write failed)
UNWRITABLE = Path("/proc/wavediff-test")  # a virtual file system: nothing can be created there


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Inputs of every kind, made once."""
    tmp = tmp_path_factory.mktemp("inputs")
    f = {"tmp": tmp}
    f["gen"] = tmp / "g.safetensors"
    assert main(["convert-official", str(NETG), "--official-args", str(ARGS), "-o", str(f["gen"])]) == 0
    f["state"] = tmp / "state_0000002.pt"  # what `wavediff train` writes (the fields the commands look at)
    torch.save({"format": "wavediff-train-state", "version": 1, "step": 2, "G": {"w": torch.zeros(1)}}, f["state"])
    f["noimg"] = tmp / "noimg.npz"
    np.savez(f["noimg"], x=np.zeros(3))
    f["ref"] = tmp / "ref64.npz"
    np.savez(f["ref"], mu=np.zeros(64), sigma=np.eye(64))
    f["imgs"] = tmp / "imgs"
    f["imgs"].mkdir()
    for i in range(4):
        Image.fromarray(np.full((36, 36, 3), 40 * i, np.uint8)).save(f["imgs"] / f"{i}.png")
    f["afile"] = tmp / "afile"
    f["afile"].write_text("not a folder")
    return f


# name -> (argv with {placeholders}, expected message (regex), path that must not appear)
CASES: dict[str, tuple[str, str, str | None]] = {
    # no GPU, or a device that does not exist
    "train_cuda": ("train --preset tiny --data {imgs} --out {out}/r --device cuda", "no CUDA GPU.*--device cpu", "r"),
    "train_tpu": ("train --preset tiny --data {imgs} --out {out}/r --device tpu", "unknown device 'tpu'", "r"),
    "sample_cuda": ("sample {gen} --n 2 --out {out}/g.png --device cuda", "no CUDA GPU.*--device cpu", "g.png"),
    "sample_bad": ("sample {gen} --n 2 --out {out}/g.png --device gpu0", "unknown device 'gpu0'.*cpu, cuda", "g.png"),
    "sample_meta": ("sample {gen} --n 2 --out {out}/g.png --device meta", "'meta' is not supported", "g.png"),
    "fid_stats_cuda": ("fid stats {imgs} -o {out}/r.npz --device cuda", "no CUDA GPU", "r.npz"),
    "fid_compute_cuda": ("fid compute {imgs} --ref {ref} --dims 64 --device cuda", "no CUDA GPU", None),
    "pr_cuda": ("pr {imgs} --real {imgs} --vgg16 {out}/v.pt --device cuda", "no CUDA GPU", None),
    "bench_cuda": ("bench --preset tiny --runs 1 --device cuda", "no CUDA GPU", None),
    "bench_xla": ("bench --preset tiny --runs 1 --device xla", "'xla' is not supported", None),
    "serve_cuda": ("serve {gen} --port 0 --device cuda", "no CUDA GPU", None),
    # outputs that cannot be written (missing parents elsewhere are created: see the tests below)
    "train_out_virtual": ("train --preset tiny --data {imgs} --out {unwritable}/run", "cannot write.*choose", None),
    "train_out_file": ("train --preset tiny --data {imgs} --out {afile}", "is a file, not a folder", None),
    "sample_out_virtual": ("sample {gen} --n 2 --out {unwritable}/g.png", "cannot write --out.*choose", None),
    "sample_out_under_file": ("sample {gen} --n 2 --out {afile}/sub/g.png", "afile is a file, not a folder", None),
    "sample_out_dir_virtual": ("sample {gen} --n 2 --out {unwritable}/pngs", "cannot write --out", None),
    "convert_out_virtual": (
        "convert-official {netg} --official-args {args} -o {unwritable}/x.safetensors",
        "cannot write -o.*choose",
        None,
    ),
    "fid_stats_out_virtual": ("fid stats {imgs} -o {unwritable}/r.npz", "cannot write -o", None),
    "demo_out_virtual": ("demo --minutes 1 --out {unwritable}/demo", "cannot write --out", None),
    # zero or negative steps, batch sizes, counts and minutes
    "train_steps_0": ("train --preset tiny --data {imgs} --out {out}/r --steps 0", "--steps must be >= 1, got 0", "r"),
    "train_steps_neg": ("train --preset tiny --data {imgs} --out {out}/r --steps -5", "--steps must be >= 1", "r"),
    "train_batch_0": (
        "train --preset tiny --data {imgs} --out {out}/r --batch-size 0",
        "--batch-size must be >= 1",
        "r",
    ),
    "train_ckpt_0": (
        "train --preset tiny --data {imgs} --out {out}/r --checkpoint-every 0",
        "--checkpoint-every must be >= 1",
        "r",
    ),
    "train_timeout_0": (
        "train --preset tiny --data {imgs} --out {out}/r --dist-timeout 0",
        "--dist-timeout must be a positive",
        "r",
    ),
    "train_minutes_neg": (
        "train --preset tiny --data {imgs} --out {out}/r --set train.max_minutes=-1",
        "train.max_minutes must be >= 0",
        "r",
    ),
    "train_workers_neg": (
        "train --preset tiny --data {imgs} --out {out}/r --set data.num_workers=-2",
        "data.num_workers must be >= 0",
        "r",
    ),
    "sample_n_0": ("sample {gen} --n 0 --out {out}/g.png", "--n must be from 1 to 10,000,000, got 0", "g.png"),
    "sample_n_neg": ("sample {gen} --n -3 --out {out}/g.png", "--n must be from 1 to 10,000,000, got -3", "g.png"),
    "sample_batch_0": ("sample {gen} --n 2 --batch 0 --out {out}/g.png", "--batch must be >= 1", "g.png"),
    "fid_compute_n_0": ("fid compute {imgs} --ref {ref} --dims 64 --n 0", "--n must be >= 1", None),
    "fid_compute_batch_neg": ("fid compute {imgs} --ref {ref} --dims 64 --batch -1", "--batch must be >= 1", None),
    "fid_stats_max_neg": ("fid stats {imgs} -o {out}/r.npz --max-images -1", "--max-images must be >= 1", "r.npz"),
    "pr_max_real_0": ("pr {imgs} --real {imgs} --vgg16 {out}/v.pt --max-real 0", "--max-real must be >= 1", None),
    "pr_n_neg": ("pr {imgs} --real {imgs} --vgg16 {out}/v.pt --n -2", "--n must be >= 1", None),
    "bench_runs_0": ("bench --preset tiny --runs 0", "--runs must be >= 1", None),
    "bench_warmup_neg": ("bench --preset tiny --warmup -1", "--warmup >= 0", None),
    "bench_batch_0": ("bench --preset tiny --batch 0 --runs 1", "--batch must be >= 1", None),
    "bench_threads_neg": ("bench --preset tiny --threads -2 --runs 1", "--threads must be >= 0", None),
    "demo_minutes_0": ("demo --minutes 0 --out {out}/d", "--minutes must be positive", "d"),
    "demo_minutes_neg": ("demo --minutes -2 --out {out}/d", "--minutes must be positive", "d"),
    "demo_steps_neg": ("demo --steps -5 --out {out}/d", "--steps must be >= 1", "d"),
    "serve_port_neg": ("serve {gen} --port -1", "bad port -1", None),
    # a file of the wrong kind
    "sample_state": (
        "sample {state} --n 2 --out {out}/g.png",
        "training state.*generator_0000002.safetensors",
        "g.png",
    ),
    "sample_state_preset": ("sample {state} --preset tiny --n 2 --out {out}/g.png", "wavediff training state", "g.png"),
    "bench_state": ("bench {state} --runs 1", "is a wavediff training state", None),
    "serve_state": ("serve {state} --port 0", "is a wavediff training state", None),
    "convert_netd": ("convert-official {netd} --preset cifar10 -o {out}/x.safetensors", "discriminator.*netG_", "x.s"),
    "sample_netd": (
        "sample {netd} --official-args {args} --n 2 --out {out}/g.png",
        "discriminator \\(netD\\)",
        "g.png",
    ),
    "convert_state": ("convert-official {state} --preset tiny -o {out}/x.safetensors", "training state", "x.s"),
    "sample_text_file": ("sample {afile} --n 2 --out {out}/g.png", "afile is not a checkpoint", "g.png"),
    "bench_text_file": ("bench {afile} --runs 1", "afile is not a checkpoint", None),
    "sample_missing_pth": ("sample {out}/netG_9.pth --n 2 --out {out}/g.png", "netG_9.pth not found", "g.png"),
    "sample_empty_dir": ("sample {imgs} --n 2 --out {out}/g.png", "holds no generator checkpoint", "g.png"),
    "sample_dir_preset": ("sample {imgs} --preset tiny --n 2 --out {out}/g.png", "is a directory", "g.png"),
    "train_resume_netg": (
        "train --preset tiny --data {imgs} --out {out}/r --resume {netg}",
        "not a wavediff training",
        "r",
    ),
    "fid_npz_no_images": ("fid compute {noimg} --ref {ref} --dims 64", "has no array 'images'", None),
    "fid_ref_no_stats": ("fid compute {imgs} --ref {noimg}", "no 'mu' and 'sigma'", None),
    "pr_npz_no_images": ("pr {noimg} --real {imgs} --vgg16 {out}/v.pt", "has no array 'images'", None),
    "fid_stats_npz_no_images": ("fid stats {noimg} -o {out}/r.npz", "has no array 'images'", "r.npz"),
    "presets_unknown": ("presets cifar100", "unknown preset 'cifar100'", None),
    # numbers outside what they can mean (checked by --dry-run too, before anything is written)
    "train_seed_negative": ("train --preset tiny --data {imgs} --out {out}/r --seed -1", "train.seed=-1", "r"),
    "train_seed_huge": (
        "train --preset tiny --data {imgs} --out {out}/r --seed 99999999999999999999",
        "train.seed",
        "r",
    ),
    "train_lr_nan": ("train --preset tiny --data {imgs} --out {out}/r --set train.lr_g=nan", "train.lr_g=nan", "r"),
    "train_lr_negative": ("train --preset tiny --data {imgs} --out {out}/r --set train.lr_d=-1", "train.lr_d=-1", "r"),
    "train_beta": (
        "train --preset tiny --data {imgs} --out {out}/r --dry-run --set train.beta1=5",
        "train.beta1",
        None,
    ),
    "train_dropout": ("train --preset tiny --data {imgs} --out {out}/r --set generator.dropout=2", "dropout", "r"),
    "train_nf_0": ("train --preset tiny --data {imgs} --out {out}/r --set generator.nf=0", "generator.nf=0", "r"),
    "train_nf_groupnorm": (
        "train --preset tiny --data {imgs} --out {out}/r --dry-run --set generator.nf=18",
        "make no network .*GroupNorm",
        None,
    ),
    "train_fourier": (
        "train --preset tiny --data {imgs} --out {out}/r --set generator.embedding_type=fourier",
        "embedding_type=fourier embeds log.t.",
        "r",
    ),
    "train_T_0": (
        "train --preset tiny --data {imgs} --out {out}/r --set diffusion.num_timesteps=0",
        "num_timesteps",
        "r",
    ),
    "train_beta_min": ("train --preset tiny --data {imgs} --out {out}/r --set diffusion.beta_min=-5", "beta_min", "r"),
    "train_r1": ("train --preset tiny --data {imgs} --out {out}/r --set train.r1_gamma=-1", "r1_gamma", "r"),
    "train_section": (
        "train --preset tiny --data {imgs} --out {out}/r --set train=5",
        "'train' is a config section",
        "r",
    ),
    "train_precision_dry": (
        "train --preset tiny --data {imgs} --out {out}/r --dry-run --set train.precision=fp16",
        "fp32 or bf16",
        None,
    ),
    # data that is not what the preset reads
    "train_cifar_in_images": (
        "train --preset cifar10 --data {imgs} --out {out}/r",
        "holds image files.*train: --dataset folder",
        "r",
    ),
    "train_digits_path": ("train --preset digits --data {out}/nowhere --out {out}/r", "digits dataset is bundled", "r"),
    "fid_stats_cifar_in_images": (
        "fid stats {imgs} --preset cifar10 -o {out}/r.npz",
        "holds image files.*fid stats: drop --preset",
        "r.npz",
    ),
    "train_out_in_data": ("train --preset tiny --data {imgs} --out {imgs}/run", "inside the image folder", None),
    # seeds and outputs of `sample`
    "sample_seed_negative": ("sample {gen} --seeds=-3-5 --out {out}/s", "seeds are integers >= 0", "s"),
    "sample_seed_huge": ("sample {gen} --seeds 99999999999999999999 --out {out}/s", "above 2.63 - 1", "s"),
    "sample_seed_many": ("sample {gen} --seeds 0-10000000000 --out {out}/s", "at most 10,000,000", "s"),
    "sample_n_many": ("sample {gen} --n 10000000000 --out {out}/s", "--n must be from 1", "s"),
    "sample_out_npy": ("sample {gen} --n 2 --out {out}/x.npy", "not an output format", "x.npy"),
    "load_state_as_generator": ("bench {state} --runs 1", "training state", None),
    # sampler options where nothing is sampled, and bench's inputs
    "fid_folder_compile": (
        "fid compute {imgs} --ref {ref} --dims 64 --compile",
        "--compile applies to checkpoints",
        None,
    ),
    "fid_folder_precision": ("fid compute {imgs} --ref {ref} --dims 64 --precision bf16", "--precision applies", None),
    "bench_json_unwritable": ("bench --preset tiny --runs 1 --json {unwritable}/b.json", "cannot write", None),
    "bench_nothing": ("bench --runs 1", "say what to time", None),
    "bench_args_alone": ("bench --preset tiny --official-args {args} --runs 1", "give the .pth", None),
}


def _one_line(capsys, argv: list[str], expected: str, code: int = 2) -> str:
    rc = main(argv)
    out = capsys.readouterr()
    lines = [line for line in out.err.strip().splitlines() if not PROGRESS.match(line)]
    assert rc == code, (rc, out.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err[-2000:]
    assert "Traceback" not in out.err + out.out
    assert re.search(expected, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_path_is_one_line(case, files, tmp_path, capsys):
    argv, expected, must_not_exist = CASES[case]
    if argv.split()[0] not in COMMANDS:
        pytest.skip(f"no `wavediff {argv.split()[0]}` here")
    values = {k: str(v) for k, v in files.items()} | {
        "out": str(tmp_path),
        "unwritable": str(UNWRITABLE),
        "netg": str(NETG),
        "netd": str(NETD),
        "args": str(ARGS),
    }
    _one_line(capsys, [a.format(**values) for a in argv.split()], expected)
    if must_not_exist:
        assert not list(tmp_path.glob(must_not_exist + "*")), sorted(p.name for p in tmp_path.iterdir())
    assert not UNWRITABLE.exists()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--precision", "tf32"], "tf32 needs a CUDA device"),
        (["--winograd", "--precision", "bf16"], "--winograd applies"),
    ],
)
def test_sampler_options_the_device_cannot_run_fail_before_sampling_starts(files, tmp_path, capsys, flags, expected):
    rc = main(["sample", str(files["gen"]), "--n", "2", "--out", str(tmp_path / "g.png"), "--device", "cpu", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and expected in err and "%|" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_gpu_index_this_machine_lacks(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    argv = ["sample", str(files["gen"]), "--n", "2", "--out", str(tmp_path / "g.png"), "--device", "cuda:7"]
    _one_line(capsys, argv, r"'cuda:7' does not exist: this machine has 1 GPU\(s\) \(cuda:0\)")
    argv = [
        "train",
        "--preset",
        "tiny",
        "--data",
        str(files["imgs"]),
        "--out",
        str(tmp_path / "r"),
        "--device",
        "cuda:3",
    ]
    _one_line(capsys, argv, "'cuda:3' does not exist")
    monkeypatch.setenv("LOCAL_RANK", "2")  # the third process of `torchrun --nproc_per_node 3` on a 1-GPU machine
    argv = ["sample", str(files["gen"]), "--n", "2", "--out", str(tmp_path / "pngs"), "--device", "cuda"]
    _one_line(capsys, argv, r"process 2 on this machine needs cuda:2.*--nproc_per_node 1")
    assert not list(tmp_path.iterdir())


def test_resuming_a_finished_run_says_there_is_nothing_to_train(files, tmp_path, capsys):
    run = ["train", "--preset", "tiny", "--data", str(files["imgs"]), "--out", str(tmp_path / "r"), "--batch-size", "4"]
    assert main([*run, "--steps", "1"]) == 0
    capsys.readouterr()
    for steps in ("1", "0", "-1"):  # the same length, none at all, and a negative one
        expected = "already at step 1 of 1: nothing to train" if steps == "1" else "--steps must be >= 1"
        _one_line(capsys, [*run, "--steps", steps, "--resume", "auto"], expected)
    assert main([*run, "--steps", "2", "--resume", "auto"]) == 0


def test_missing_parent_folders_of_an_output_are_created(files, tmp_path, capsys):
    grid = tmp_path / "a" / "b" / "grid.png"
    assert main(["sample", str(files["gen"]), "--n", "2", "--out", str(grid)]) == 0
    assert Image.open(grid).size == (64, 32)
    pngs = tmp_path / "c" / "d"
    assert main(["sample", str(files["gen"]), "--seeds", "3,4", "--out", str(pngs)]) == 0
    assert sorted(p.name for p in pngs.iterdir()) == ["seed000003.png", "seed000004.png"]  # no temporary files
    capsys.readouterr()


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", ["sample", "convert-official"])
def test_disk_full_keeps_the_previous_file_and_says_what_happened(command, files, tmp_path, capsys, monkeypatch):
    target = tmp_path / ("grid.png" if command == "sample" else "x.safetensors")
    argv = {
        "sample": ["sample", str(files["gen"]), "--n", "2", "--out", str(target)],
        "convert-official": ["convert-official", str(NETG), "--official-args", str(ARGS), "-o", str(target)],
    }[command]
    assert main(argv) == 0
    before = target.read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", _disk_full)  # the disk fills up as the new file is flushed
    line = _one_line(capsys, argv, "no space left on the device")
    assert f"the previous {target.name} is untouched" in line and "free some space" in line
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind


def test_sample_and_bench_take_a_run_directory(files, tmp_path, capsys):
    """A training run's directory stands for its final (else latest) EMA generator, as in `wavediff serve`."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    gen = files["gen"].read_bytes()
    (run / "checkpoints" / "generator_0000004.safetensors").write_bytes(gen)
    assert main(["sample", str(run), "--seeds", "0-1", "--precision", "fp32", "--out", str(tmp_path / "a.npz")]) == 0
    assert (
        main(["sample", str(files["gen"]), "--seeds", "0-1", "--precision", "fp32", "--out", str(tmp_path / "b.npz")])
        == 0
    )
    assert np.array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])
    assert main(["bench", str(run), "--runs", "1", "--warmup", "0", "--batch", "2"]) == 0
    G = wavediff.load_generator(run)
    assert G.config.name == wavediff.load_generator(files["gen"]).config.name and not G.training


def test_dist_timeout_values(monkeypatch):
    import argparse

    from wavediff.cli.train import NO_DIST_TIMEOUT_S, check_arguments, dist_timeout_s
    from wavediff.errors import ConfigError

    def args(value):
        return argparse.Namespace(steps=None, batch_size=None, checkpoint_every=None, dist_timeout=value)

    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="--dist-timeout must be a positive number"):
            check_arguments(args(bad))
    assert dist_timeout_s(args(float("inf"))) == NO_DIST_TIMEOUT_S  # "no limit", which a timedelta can hold
    assert dist_timeout_s(args(30.0)) == 30.0
    monkeypatch.setenv("WAVEDIFF_DIST_TIMEOUT", "nan")
    with pytest.raises(ConfigError, match="WAVEDIFF_DIST_TIMEOUT='nan'"):
        dist_timeout_s(args(None))
    monkeypatch.setenv("WAVEDIFF_DIST_TIMEOUT", "inf")
    assert dist_timeout_s(args(None)) == NO_DIST_TIMEOUT_S


def test_an_error_in_a_process_torchrun_started_names_its_rank(capsys, monkeypatch, tmp_path):
    missing = tmp_path / "nope.safetensors"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert main(["sample", str(missing), "--n", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error (rank 2): ") and str(missing) in err
    monkeypatch.setenv("RANK", "0")  # rank 0 reports as a single process does
    assert main(["sample", str(missing), "--n", "1", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
