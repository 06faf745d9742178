"""Metrics during training: FID every K steps (digits features: no weights), the best generator kept, resume."""

import json

import numpy as np
import pytest
import torch

from wavediff.checkpoints.io import load_generator
from wavediff.cli import main
from wavediff.errors import ConfigError
from wavediff.metrics.stats import FIDStats
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset
from wavediff.sampling import generate
from wavediff.training.metrics import FeatureSpace, MetricTracker, build_feature_space


def _records(run_dir, event):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == event]


def _train(out, steps, *extra):
    argv = ["train", "--preset", "digits", "--out", str(out), "--steps", str(steps), "--metrics-every", "2"]
    argv += ["--metrics-n", "24", "--checkpoint-every", "2", "--set", "train.batch_size=8", *extra]
    assert main(argv) == 0


def test_digits_metrics_logged_plotted_best_kept_and_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    _train(out, 4)
    metrics = _records(out, "metric")
    assert [m["step"] for m in metrics] == [2, 4]
    for m in metrics:
        assert m["fid_digits"] > 0 and m["n"] == 24 and m["metric_s"] > 0 and m["train_s"] > 0
    values = [m["fid_digits"] for m in metrics]
    assert metrics[-1]["best"] == min(values) and metrics[-1]["best_step"] == metrics[int(np.argmin(values))]["step"]
    assert (out / "metrics.png").stat().st_size > 1000
    assert (out / "metrics" / "step_0000004.png").is_file()
    best = out / "checkpoints" / "generator_best.safetensors"
    G = load_generator(best)
    assert G.config.name == "digits"
    from safetensors import safe_open

    with safe_open(str(best), "pt") as f:
        meta = f.metadata()
    assert int(meta["step"]) == metrics[-1]["best_step"] and float(meta["fid_digits"]) == min(values)
    assert "fid_digits" in capsys.readouterr().out

    # A resume continues the history and keeps the best value (and its file) unless beaten.
    _train(out, 6, "--resume", "auto")
    after = _records(out, "metric")
    assert [m["step"] for m in after] == [2, 4, 6]
    assert after[-1]["best"] == min(values + [after[-1]["fid_digits"]])
    assert after[-1]["train_s"] > metrics[-1]["train_s"] and after[-1]["metric_s"] > metrics[-1]["metric_s"]
    state = torch.load(out / "checkpoints" / "state_0000006.pt", weights_only=True)
    assert state["metrics"]["best"] == after[-1]["best"]


def test_tracker_with_a_stand_in_feature_network(tmp_path):
    """Any feature space (here a tiny random conv net in place of Inception): FID of the reference itself is ~0."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.Flatten(), torch.nn.LazyLinear(6))

    def extract(images):
        with torch.no_grad():
            return net(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).double().numpy()

    cfg = get_preset("tiny").override(["train.metrics_every=1", "train.metrics_n=32"])
    G = build_generator(cfg.generator)
    own = extract(np.concatenate(list(generate(G, list(range(32)), 100, cfg, "cpu"))))
    ref = FIDStats(own.mean(0), np.cov(own, rowvar=False), 32)
    tracker = MetricTracker(cfg, tmp_path, torch.device("cpu"), FeatureSpace("fid", extract, ref, 32))
    rec = tracker.measure(G, 1, 1.0)
    assert abs(rec["fid"]) < 1e-6 and rec["improved"] and tracker.best_path.is_file()
    rec2 = tracker.measure(G, 2, 2.0)  # same generator, same seeds: same value, not an improvement
    assert not rec2["improved"] and tracker.best_step == 1
    saved = tracker.state_dict(3.0)
    again = MetricTracker(cfg, tmp_path, torch.device("cpu"), FeatureSpace("fid", extract, ref, 32))
    again.load_state_dict(saved)
    assert again.best == tracker.best and again.best_step == 1 and len(again.history) == 2


def test_metrics_need_reference_statistics_outside_digits(tmp_path):
    cfg = get_preset("tiny").override(["train.metrics_every=5"])
    with pytest.raises(ConfigError, match="--fid-ref REF.npz"):
        build_feature_space(cfg, torch.device("cpu"))
    cfg = cfg.override([f"train.fid_ref={tmp_path / 'missing.npz'}"])
    with pytest.raises(Exception, match="not found"):
        build_feature_space(cfg, torch.device("cpu"))


def test_train_flags_map_to_config(capsys):
    argv = ["train", "--preset", "cifar10", "--out", "x", "--metrics-every", "500", "--metrics-n", "10000"]
    argv += ["--fid-ref", "ref.npz", "--inception-weights", "w.pth", "--dry-run"]
    assert main(argv) == 0
    tc = json.loads(capsys.readouterr().out)["train"]
    assert (tc["metrics_every"], tc["metrics_n"], tc["fid_ref"], tc["inception_weights"]) == (
        500,
        10000,
        "ref.npz",
        "w.pth",
    )
    assert get_preset("cifar10").train.metrics_every == 0  # the paper presets train as before


def test_training_fid_warns_as_fid_compute_does(tmp_path, capsys):
    """A reference made with other Inception weights and at another size, and few samples: the warnings of
    `wavediff fid compute`, before the first step."""
    from test_metrics import random_fid_inception_weights
    from wavediff.metrics.stats import save_stats

    random_fid_inception_weights(tmp_path / "w.pth")
    meta = {"protocol": "lossless", "inception_weights_sha256": "0" * 64, "image_size": [40, 48]}
    save_stats(tmp_path / "ref.npz", FIDStats(np.zeros(64), np.eye(64), 100, meta))
    cfg = get_preset("tiny").override(
        ["train.metrics_every=5", "train.metrics_n=16", f"train.fid_ref={tmp_path / 'ref.npz'}"]
    )
    cfg = cfg.override([f"train.inception_weights={tmp_path / 'w.pth'}"])
    MetricTracker(cfg, tmp_path, torch.device("cpu"), build_feature_space(cfg, torch.device("cpu")))
    err = capsys.readouterr().err
    for expected in (
        "is not the official",
        "16 images for 64-d features",
        "Inception weights 000000000000",
        "image size [40, 48], these samples [32, 32]",
    ):
        assert "warning: training FID: " in err and expected in err, err
