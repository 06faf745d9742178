"""`wavediff fid stats|compute` and `wavediff pr`, in process, offline (random Inception weights and a
tiny TorchScript stand-in for VGG16). FID runs use --dims 64 to keep the matrix square root instant."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_metrics import random_fid_inception_weights, save_tiny_vgg, smooth_images, write_pngs
from wavediff.cli import main
from wavediff.metrics import frechet_distance, load_stats

N = 6


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    random_fid_inception_weights(root / "inception.pth")
    a, b = smooth_images(N, seed=10), smooth_images(N, seed=11)
    b[:, :, :16] = 255 - b[:, :, :16]  # a visibly different distribution
    write_pngs(root / "a", a)
    write_pngs(root / "b", b)
    np.savez(root / "b.npz", images=b)
    assert (
        main(
            [
                "fid",
                "stats",
                str(root / "a"),
                "-o",
                str(root / "ref_a.npz"),
                "--dims",
                "64",
                "--inception-weights",
                str(root / "inception.pth"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return root


def run(capsys, *argv) -> tuple[int, list[str], str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out.strip().splitlines(), err.strip()


def fid(capsys, env, samples, *extra) -> tuple[float, list[str], str]:
    rc, lines, err = run(
        capsys,
        "fid",
        "compute",
        samples,
        "--ref",
        env / "ref_a.npz",
        "--dims",
        "64",
        "--inception-weights",
        env / "inception.pth",
        "--device",
        "cpu",
        *extra,
    )
    assert rc == 0, err
    return float(lines[-1]), lines, err


def assert_one_line_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err, err
    for f in fragments:
        assert f in err, err


def test_stats_file_describes_its_pipeline(env):
    stats = load_stats(env / "ref_a.npz")
    assert stats.n == N and stats.mu.shape == (64,) and stats.sigma.shape == (64, 64)
    with np.load(env / "ref_a.npz", allow_pickle=False) as f:
        assert set(f.files) == {"mu", "sigma", "n", "meta"}
        meta = json.loads(str(f["meta"]))
    assert meta["protocol"] == "lossless" and meta["image_size"] == [32, 32] and meta["dataset"] == "folder"
    assert len(meta["inception_weights_sha256"]) == 64


def test_compute_reports_and_ends_with_the_value(capsys, env):
    same, _, _ = fid(capsys, env, env / "a")
    assert abs(same) < 1e-2
    value, lines, err = fid(capsys, env, env / "b")
    assert value > 0.05 and value > 10 * abs(same)
    assert lines[-1] == f"{value:.4f}"
    report = "\n".join(lines[:-1])
    assert "n=6" in report and "protocol lossless" in report
    assert load_stats(env / "ref_a.npz").meta["inception_weights_sha256"][:12] in report
    assert "not the official" in err  # random weights
    from_npz, _, _ = fid(capsys, env, env / "b.npz")
    assert from_npz == value


def test_compute_from_checkpoint_generates_n_images(capsys, env, monkeypatch, tmp_path):
    import wavediff.sampling

    images = np.load(env / "b.npz")["images"]
    calls = []

    def fake_generate(checkpoint, seeds, batch_size, device, precision, **kw):
        calls.append((checkpoint, list(seeds), batch_size, device, precision))
        for i in range(0, len(seeds), batch_size):
            yield images[i : i + batch_size]

    monkeypatch.setattr(wavediff.sampling, "generate_uint8", fake_generate)
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"x")
    folder_value, _, _ = fid(capsys, env, env / "b")
    value, lines, _ = fid(capsys, env, ckpt, "--n", N, "--batch", 4)
    assert value == pytest.approx(folder_value, abs=1e-9)
    assert calls == [(str(ckpt), list(range(N)), 4, "cpu", "fp32")]
    fid(capsys, env, ckpt, "--seeds", "10-15", "--precision", "bf16")
    assert calls[-1][1] == list(range(10, 16)) and calls[-1][4] == "bf16"
    # a training run's directory stands for its final generator, as in `wavediff sample`
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    final = run_dir / "checkpoints" / "generator_final.safetensors"
    final.write_bytes(b"x")
    assert fid(capsys, env, run_dir, "--n", N)[0] == pytest.approx(folder_value, abs=1e-9)
    assert calls[-1][0] == str(final)


def test_paper_protocol_needs_50k_unless_allowed(capsys, env):
    rc, _, err = run(
        capsys,
        "fid",
        "compute",
        env / "b",
        "--ref",
        env / "ref_a.npz",
        "--dims",
        64,
        "--protocol",
        "paper",
        "--inception-weights",
        env / "inception.pth",
    )
    assert_one_line_error(rc, err, "50000", "--allow-few")
    lossless, _, _ = fid(capsys, env, env / "b")
    paper, lines, err = fid(capsys, env, env / "b", "--protocol", "paper", "--allow-few")
    assert paper != lossless and "protocol paper" in "\n".join(lines)
    assert "reference statistics used protocol lossless" in err


def test_stats_through_a_preset_pipeline(capsys, env, monkeypatch, tmp_path):
    import wavediff.data

    images = np.load(env / "b.npz")["images"]
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1  # as the pipeline yields them
    seen = {}

    def fake_build_dataset(cfg):
        seen.update(path=cfg.path, hflip=cfg.hflip)
        return torch.utils.data.TensorDataset(tensors)

    monkeypatch.setattr(wavediff.data, "build_dataset", fake_build_dataset)
    rc, lines, err = run(
        capsys,
        "fid",
        "stats",
        tmp_path / "cifar",
        "--preset",
        "cifar10",
        "-o",
        tmp_path / "ref.npz",
        "--dims",
        64,
        "--inception-weights",
        env / "inception.pth",
        "--max-images",
        5,
    )
    assert rc == 0, err
    assert seen == {"path": str(tmp_path / "cifar"), "hflip": False}
    stats = load_stats(tmp_path / "ref.npz")
    assert stats.n == 5 and stats.meta["dataset"] == "cifar10" and stats.meta["preset"] == "cifar10"
    rc, _, err = run(
        capsys,
        "fid",
        "stats",
        env / "b.npz",
        "-o",
        tmp_path / "ref_npz.npz",
        "--dims",
        64,
        "--inception-weights",
        env / "inception.pth",
        "--max-images",
        5,
    )
    direct = load_stats(tmp_path / "ref_npz.npz")
    assert frechet_distance(stats.mu, stats.sigma, direct.mu, direct.sigma) == pytest.approx(0, abs=1e-6)


def test_fid_errors_are_one_line(capsys, env, tmp_path):
    weights = ["--inception-weights", env / "inception.pth"]
    rc, _, err = run(
        capsys, "fid", "stats", env / "a", "-o", tmp_path / "r.npz", "--inception-weights", tmp_path / "missing.pth"
    )
    assert_one_line_error(rc, err, "missing.pth", "github.com/mseitzer/pytorch-fid/releases", "--inception-weights")
    png = tmp_path / "not_weights.png"
    write_pngs(tmp_path / "pngs", smooth_images(1, 0, size=16))
    png.write_bytes(next((tmp_path / "pngs").iterdir()).read_bytes())
    rc, _, err = run(capsys, "fid", "stats", env / "a", "-o", tmp_path / "r.npz", "--inception-weights", png)
    assert_one_line_error(rc, err, "not a file of tensors", "pt_inception-2015-12-05")
    assert "weights_only" not in err  # PyTorch's advice to load it with code execution on is not passed on

    np.savez(tmp_path / "ref_2048.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    rc, _, err = run(capsys, "fid", "compute", env / "b", "--ref", tmp_path / "ref_2048.npz", "--dims", 64, *weights)
    assert_one_line_error(rc, err, "2048-d", "--dims")

    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "fid", "compute", tmp_path / "empty", "--ref", env / "ref_a.npz", "--dims", 64, *weights)
    assert_one_line_error(rc, err, "no image files")

    write_pngs(tmp_path / "mixed", [smooth_images(1, 0, size=32)[0], smooth_images(1, 0, size=16)[0]])
    rc, _, err = run(capsys, "fid", "compute", tmp_path / "mixed", "--ref", env / "ref_a.npz", "--dims", 64, *weights)
    assert_one_line_error(rc, err, "differ in size")

    with open(tmp_path / "stat.npy", "wb") as f:
        np.save(f, {"mu": np.zeros(64), "sigma": np.eye(64), "note": complex(1, 2)}, allow_pickle=True)
    rc, _, err = run(capsys, "fid", "compute", env / "b", "--ref", tmp_path / "stat.npy", "--dims", 64, *weights)
    assert_one_line_error(rc, err, "needs trust", "builtins.complex", "np.savez")


def test_authors_npy_reference(capsys, env, tmp_path):
    ref = load_stats(env / "ref_a.npz")
    with open(tmp_path / "stat.npy", "wb") as f:
        np.save(f, {"mu": ref.mu, "sigma": ref.sigma}, allow_pickle=True)
    rc, lines, err = run(
        capsys,
        "fid",
        "compute",
        env / "a",
        "--ref",
        tmp_path / "stat.npy",
        "--dims",
        64,
        "--inception-weights",
        env / "inception.pth",
    )
    assert rc == 0, err
    assert abs(float(lines[-1])) < 1e-2 and "n=unknown" in lines[-3]


def test_pr_command(capsys, env, tmp_path):
    save_tiny_vgg(tmp_path / "vgg16.pt")
    rc, lines, err = run(capsys, "pr", env / "a", "--real", env / "a", "--vgg16", tmp_path / "vgg16.pt")
    assert rc == 0, err
    assert lines[-2:] == ["precision 1.0000", "recall 1.0000"]
    assert "Kynkaanniemi" in lines[0] and "k=3" in lines[0] and "pr50k3" in lines[0]
    rc, lines, err = run(
        capsys, "pr", env / "b.npz", "--real", env / "a", "--vgg16", tmp_path / "vgg16.pt", "--n", 5, "--max-real", 4
    )
    assert rc == 0, err
    assert "n=5" in lines[1] and "n=4" in lines[2]
    assert lines[-2].startswith("precision 0.") or lines[-2] == "precision 1.0000"
    rc, _, err = run(capsys, "pr", env / "a", "--real", env / "a", "--vgg16", tmp_path / "none.pt")
    assert_one_line_error(rc, err, "none.pt", "api.ngc.nvidia.com", "vgg16.pt", "--vgg16")
