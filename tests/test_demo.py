"""A shortened demo end to end: every output file is produced and well formed."""

import json

import numpy as np
from PIL import Image

from wavediff.cli import main
from wavediff.demo.score import DigitClassifier


def test_short_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "4", "--out", str(out), "--seed", "1"]) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    final = out / "checkpoints" / "generator_final.safetensors"
    assert stdout[-1] == str(final) and final.is_file()
    assert any("samples next to real digits" in line for line in stdout)
    assert any(line.startswith("memorisation:") for line in stdout) and any("digits FID" in x for x in stdout)
    for name in ("samples_vs_real.png", "losses.png", "progress.png"):
        img = Image.open(out / name)
        img.verify()
        assert img.size[0] > 300 and img.size[1] > 200
    q = json.loads((out / "quality.json").read_text())
    for key in ("samples", "real_held_out", "noise"):
        assert 0.0 <= q[key]["recognised"] <= 1.0 and len(q[key]["class_counts"]) == 10
    assert q["real_held_out"]["recognised"] > 0.8 and q["noise"]["recognised"] < 0.05
    near = q["nearest_training_digit"]
    assert near["samples"] > 0 and 0.2 < near["real_held_out"] < 1.0  # real digits: about 0.46 on the 8x8 grid
    assert q["digits_fid"]["last_step"] == 4 and q["digits_fid"]["best"] <= q["digits_fid"]["last"]
    assert (out / "checkpoints" / "generator_best.safetensors").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["name"] == "digits" and cfg["train"]["seed"] == 1 and cfg["data"]["hflip"] is False
    assert cfg["train"]["steps"] == 4 and cfg["train"]["max_minutes"] == 0  # --steps instead of the 8 minutes
    assert (out / "log.jsonl").read_text().count('"event": "train"') >= 1


def test_demo_rejects_bad_minutes(tmp_path, capsys):
    assert main(["demo", "--minutes", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err


def test_classifier_separates_digits_from_garbage():
    from wavediff.data import load_digits_arrays

    clf = DigitClassifier(seed=0)
    assert clf.accuracy > 0.9
    digits, _ = load_digits_arrays(32)
    assert clf.score_images(digits[:200]).recognised > 0.85
    rng = np.random.default_rng(0)
    assert clf.score_images(rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)).recognised < 0.05
    assert clf.score_images(np.zeros((20, 32, 32, 3), np.uint8)).recognised == 0.0


def test_nearest_distances_skip_only_the_own_copy():
    from wavediff.demo.score import nearest_distances

    ref = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]], np.float32)
    assert nearest_distances(np.array([[0.0, 1.0]]), ref).tolist() == [1.0]
    # each row is measured against the others: the duplicate counts, the row itself does not
    assert nearest_distances(ref, ref, exclude_self=True).tolist() == [5.0, 0.0, 0.0]
