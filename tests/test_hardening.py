"""Lost-work guards and honest outputs: run directories that hold another run, resumes with new learning rates,
file modes, leftovers of killed saves, run directories as metric sources, and interrupted sampling."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from conftest import read_log, train_cli
from wavediff.checkpoints.io import atomic_write, remove_stale_temporaries, run_generator, save_generator
from wavediff.cli import main, report
from wavediff.cli.train import DATASET_CHOICES
from wavediff.data.build import DATASET_NAMES
from wavediff.errors import DataError
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset


def _train(capsys, images, out, *extra):
    return train_cli(capsys, "--preset", "tiny", "--data", str(images), "--out", str(out), "--batch-size", "4", *extra)


def test_a_run_directory_is_never_overwritten_by_another_run(images, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(capsys, images, a, "--steps", "4", "--checkpoint-every", "2", "--seed", "1")[0] == 0
    assert _train(capsys, images, b, "--steps", "4", "--checkpoint-every", "2", "--seed", "2")[0] == 0
    before = {p.name: p.read_bytes() for p in (b / "checkpoints").iterdir()}
    # a state of run A continued into run B's directory: B's config differs (the seed)
    rc, _, err = _train(
        capsys, images, b, "--steps", "6", "--seed", "1", "--resume", str(a / "checkpoints" / "state_0000002.pt")
    )
    assert rc == 2 and "the run in" in err and "train.seed: 2 -> 1" in err
    # the same run's older state, while later ones exist: continuing would overwrite them
    rc, _, err = _train(
        capsys, images, b, "--steps", "6", "--seed", "2", "--resume", str(b / "checkpoints" / "state_0000002.pt")
    )
    assert rc == 2 and "holds later states" in err and "state_0000004.pt" in err
    # a fresh run where only the checkpoints are left (config.json deleted)
    (b / "config.json").unlink()
    rc, _, err = _train(capsys, images, b, "--steps", "2", "--seed", "7")
    assert rc == 2 and "already holds a run" in err and "checkpoint file(s)" in err
    assert {p.name: p.read_bytes() for p in (b / "checkpoints").iterdir()} == before


def test_resume_auto_in_an_empty_directory_says_it_starts_a_new_run(images, tmp_path, capsys):
    rc, out, _ = _train(capsys, images, tmp_path / "new", "--steps", "1", "--resume", "auto")
    assert rc == 0 and "no training state in" in out and "starts a new run" in out
    assert read_log(tmp_path / "new")[0]["event"] == "start"


def test_a_diverged_run_resumes_with_lower_learning_rates(images, tmp_path, capsys):
    run = tmp_path / "r"
    logs = ["--set", "train.log_every=1"]
    assert _train(capsys, images, run, "--steps", "2", "--checkpoint-every", "2", *logs)[0] == 0
    lower = ["--set", "train.lr_g=2e-5", "--set", "train.lr_d=3e-5", "--precision", "bf16"]
    rc, _, err = _train(capsys, images, run, "--steps", "3", "--resume", "auto", *logs, *lower)
    assert rc == 0, err
    scalars = [r for r in read_log(run) if "lr_g" in r]
    assert scalars[-1]["step"] == 3 and scalars[-1]["lr_g"] < 2.1e-5 and scalars[-1]["lr_d"] < 3.1e-5
    assert scalars[0]["lr_g"] > 1e-4  # the first invocation ran at the preset's rate


def test_a_corrupt_config_json_is_one_line(images, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{not json")
    rc, _, err = train_cli(capsys, "--out", str(tmp_path / "r"), "--resume", "auto")
    assert rc == 2 and err.strip().startswith("error: cannot read") and "Traceback" not in err


def test_data_path_is_saved_absolute_and_dataset_has_a_flag(images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(images.parent)
    rc, out, _ = train_cli(
        capsys, "--preset", "cifar10", "--data", images.name, "--dataset", "folder", "--out", "r", "--dry-run"
    )
    data = json.loads(out)["data"]
    assert rc == 0 and data["path"] == str(images) and data["dataset"] == "folder"
    assert set(DATASET_CHOICES) == set(DATASET_NAMES)  # the CLI's copy of the names (kept torch-free for --help)


def test_run_generator_is_the_newest_export(tmp_path):
    cfg = get_preset("tiny")
    G = build_generator(cfg.generator)
    ckpts = tmp_path / "run" / "checkpoints"
    save_generator(ckpts / "generator_0000004.safetensors", G, cfg, {"step": 4})
    save_generator(ckpts / "generator_final.safetensors", G, cfg, {"step": 4})
    assert run_generator(tmp_path / "run").name == "generator_final.safetensors"
    # resumed, then stopped at step 76: its numbered export is newer than the final one of step 4
    save_generator(ckpts / "generator_0000076.safetensors", G, cfg, {"step": 76})
    assert run_generator(tmp_path / "run").name == "generator_0000076.safetensors"


def test_atomic_writes_get_the_usual_file_mode_and_keep_an_existing_one(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # mkstemp alone would leave 0600
        os.chmod(new, 0o640)
        atomic_write(new, lambda tmp: Path(tmp).write_text("y"))
        assert stat.S_IMODE(new.stat().st_mode) == 0o640 and new.read_text() == "y"
        # a writer that replaces the temporary file with a new one (safetensors' save_file does) gets the mode too
        cfg = get_preset("tiny")
        g = save_generator(tmp_path / "g.safetensors", build_generator(cfg.generator), cfg)
        assert stat.S_IMODE(g.stat().st_mode) == 0o644
        g.unlink()
    finally:
        os.umask(old)
    (tmp_path / ".state_0000036.pt.vavxu8qz.tmp").write_bytes(b"partial")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".state_0000036.pt.vavxu8qz.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_resume_removes_what_a_killed_save_left(images, tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(capsys, images, run, "--steps", "2", "--checkpoint-every", "2")[0] == 0
    leftover = run / "checkpoints" / ".state_0000004.pt.abcd1234.tmp"
    leftover.write_bytes(b"half a state")
    rc, out, _ = _train(capsys, images, run, "--steps", "3", "--resume", "auto")
    assert rc == 0 and not leftover.exists() and "partial file of an interrupted save" in out


def test_sample_says_when_the_folder_holds_other_seeds_and_what_ctrl_c_kept(tmp_path, capsys, monkeypatch):
    cfg = get_preset("tiny")
    ckpt = save_generator(tmp_path / "g.safetensors", build_generator(cfg.generator), cfg)
    out = tmp_path / "pngs"
    assert main(["sample", str(ckpt), "--seeds", "10-11", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(ckpt), "--seeds", "0-1", "--out", str(out)]) == 0
    assert "already holds 2 PNGs of other seeds" in capsys.readouterr().out

    import wavediff.sampling

    real = wavediff.sampling.generate

    def interrupted_after_one_batch(*args, **kwargs):
        it = real(*args, **kwargs)
        yield next(it)
        raise KeyboardInterrupt

    monkeypatch.setattr(wavediff.sampling, "generate", interrupted_after_one_batch)
    rc = main(["sample", str(ckpt), "--seeds", "20-25", "--batch", "2", "--out", str(tmp_path / "more")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 130 and err == f"interrupted: after 2 of 6 samples; the 2 PNGs in {tmp_path / 'more'} are complete"
    assert sorted(p.name for p in (tmp_path / "more").iterdir()) == ["seed000020.png", "seed000021.png"]


def test_errors_from_dataloader_workers_are_reported_by_their_own_message(capsys):
    worker = DataError(
        "Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 3, in load\nwavediff.errors.DataError: image 7 of lsun is damaged; rebuild the LMDB'
    )
    assert report(worker) == 2
    assert capsys.readouterr().err == "error: image 7 of lsun is damaged; rebuild the LMDB\n"


@pytest.mark.parametrize("name", ["generator_final.safetensors", "generator_0000012.safetensors"])
def test_fid_and_pr_read_a_run_directory_as_a_checkpoint(tmp_path, name):
    from wavediff.metrics import is_checkpoint

    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "step_0000002.png").write_bytes(b"")
    assert not is_checkpoint(run)  # a folder of images, so far
    cfg = get_preset("tiny")
    save_generator(run / "checkpoints" / name, build_generator(cfg.generator), cfg, {"step": 12})
    assert is_checkpoint(run) and not is_checkpoint(run / "samples")


def test_reference_statistics_must_be_finite_numbers(tmp_path):
    import numpy as np

    from wavediff.metrics.stats import load_stats

    np.savez(tmp_path / "nan.npz", mu=np.full(4, np.nan), sigma=np.eye(4))
    np.savez(tmp_path / "text.npz", mu=np.array(["a", "b"]), sigma=np.eye(2))
    with pytest.raises(DataError, match="NaN or inf"):
        load_stats(tmp_path / "nan.npz")
    with pytest.raises(DataError, match="arrays of numbers"):
        load_stats(tmp_path / "text.npz")


def test_the_metric_folder_reader_applies_exif_orientation_as_training_does(tmp_path):
    import numpy as np
    from PIL import Image

    from wavediff.data.folder import iter_image_folder_uint8

    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[0] = 255  # a white top row
    Image.fromarray(pixels).save(tmp_path / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "b.jpg", exif=exif, quality=100)
    with pytest.raises(DataError, match="after its EXIF orientation"):
        list(iter_image_folder_uint8(tmp_path))
    (tmp_path / "a.png").unlink()
    (shown,) = list(iter_image_folder_uint8(tmp_path))
    assert shown.shape == (1, 6, 4, 3)  # the white row is now the right column
    assert shown[0, :, -1].min() > 200 and shown[0, :, 0].max() < 60


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tuning is Linux-only")
@pytest.mark.parametrize(
    ("env", "tuned"),
    [
        ({}, True),
        ({"WAVEDIFF_MALLOC_TUNING": "0"}, False),
        ({"MALLOC_ARENA_MAX": "2"}, True),
        ({"MALLOC_TOP_PAD_": "1"}, False),
    ],
)
def test_malloc_tuning_is_on_by_default_and_yields_to_the_users_own(env, tuned):
    """Large blocks stay in the heap unless the user opts out or tunes glibc's malloc already (runtime.py)."""
    import subprocess

    code = (  # then a 16 MB block: from the heap (below the program break) only when tuned, else its own mmap
        "import ctypes; from wavediff.runtime import configure_allocator; done = configure_allocator(); "
        "libc = ctypes.CDLL(None); libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p; "
        "libc.sbrk.argtypes = [ctypes.c_long]; block = libc.malloc(16 << 20); "
        "print(done, block < libc.sbrk(0))"
    )
    clean = {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") or k.startswith("WAVEDIFF_MALLOC"))}
    res = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    if tuned and not _has_glibc():
        pytest.skip("no glibc here")
    assert res.stdout.split() == [str(tuned), str(tuned)]


def _has_glibc() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, "10000"),
        ({"GOMP_SPINCOUNT": "300000"}, "300000"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, None),
    ],
)
def test_openmp_spin_is_bounded_unless_the_user_chose_one(env, expected, monkeypatch):
    """`wavediff` bounds libgomp's spin between parallel regions (runtime.py); the user's own setting wins."""
    from wavediff import runtime

    for key in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.configure_environment()
    assert os.environ.get("GOMP_SPINCOUNT") == expected


def test_quoted_messages_are_cut_at_a_word_with_an_ellipsis():
    from wavediff.errors import first_line

    e = ValueError("mmap can only be used with files saved with torch.save and _use_new_zipfile_serialization=True")
    short = first_line(e, 40)
    assert len(short) <= 40 and short.endswith("...") and e.args[0].startswith(short[:-3])
    assert short[:-3].endswith("with files")  # a whole word, not "wi"
    assert first_line(RuntimeError("[x/y.cpp:12] bad\ntrace"), 40) == "bad"


def test_a_run_with_only_its_best_generator_names_that_file(tmp_path):
    from wavediff.errors import CheckpointError

    cfg = get_preset("tiny")
    best = save_generator(
        tmp_path / "run" / "checkpoints" / "generator_best.safetensors", build_generator(cfg.generator), cfg
    )
    with pytest.raises(CheckpointError, match=f"only {best}.*pass that file"):
        run_generator(tmp_path / "run")
