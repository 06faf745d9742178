import json
import re

import pytest

from conftest import FIXTURES, REF
from wavediff.checkpoints.official import official_args_to_config, read_official_args
from wavediff.config import ExperimentConfig
from wavediff.errors import ConfigError
from wavediff.presets import PRESETS, get_preset

PAPER = ["cifar10", "stl10", "celeba_256", "celeba_512", "celeba_1024", "lsun"]


def argv_to_args(argv):
    """The authors' argv list (as in presets/<name>.json) -> a dict, like their argparse would."""
    args, i = {}, 0
    while i < len(argv):
        key, vals = argv[i][2:], []
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            vals.append(argv[i])
            i += 1
        if not vals:
            args[key] = True
        elif key in ("ch_mult", "attn_resolutions", "attn_resolution"):
            args[key] = [int(v) for v in vals]
        else:
            args[key] = vals[0]
    return args


def test_round_trip_every_preset():
    for name, cfg in PRESETS.items():
        again = ExperimentConfig.from_dict(json.loads(cfg.to_json()))
        assert again == cfg, name


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_equal_the_authors_run_lines(name):
    ref = json.loads((REF / "presets" / f"{name}.json").read_text())
    from_args = official_args_to_config(argv_to_args(ref["argv"]))
    ours = get_preset(name)
    assert from_args.generator == ours.generator
    assert from_args.discriminator == ours.discriminator
    assert from_args.diffusion == ours.diffusion
    assert from_args.image_size == ours.image_size == ref["ori_image_size"]
    assert ours.generator.resolution == ref["current_resolution"]
    t = ours.train
    a = from_args.train
    assert (t.lr_g, t.lr_d, t.ema_decay, t.r1_gamma, t.lazy_reg, t.batch_size, t.num_epoch, t.rec_loss) == (
        a.lr_g,
        a.lr_d,
        a.ema_decay,
        a.r1_gamma,
        a.lazy_reg,
        a.batch_size,
        a.num_epoch,
        a.rec_loss,
    )


def test_overrides_coerce_types_and_reject_unknown_fields():
    cfg = get_preset("tiny").override(
        ["train.lr_g=2e-4", "generator.ch_mult=1,2", "train.rec_loss=false", "data.path=/x"]
    )
    assert cfg.train.lr_g == 2e-4 and cfg.generator.ch_mult == (1, 2) and cfg.train.rec_loss is False
    assert cfg.data.path == "/x"
    # a list field whose default is empty takes numbers; t_weights holds floats
    weighted = get_preset("tiny").override(["train.t_weights=1,2.5,2,0"])
    assert weighted.train.t_weights == (1.0, 2.5, 2.0, 0.0) and all(type(w) is float for w in weighted.train.t_weights)
    assert type(weighted).from_dict(weighted.to_dict()) == weighted
    with pytest.raises(ConfigError, match="unknown config field 'train.lr'"):
        get_preset("tiny").override(["train.lr=1"])
    with pytest.raises(ConfigError, match="unknown config section"):
        get_preset("tiny").override(["nope.x=1"])
    with pytest.raises(ConfigError, match="bad value"):
        get_preset("tiny").override(["train.batch_size=many"])
    with pytest.raises(ConfigError, match="no '='"):
        get_preset("tiny").override(["train.batch_size"])
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("cifar100")


def test_official_args_resolution():
    cfg = official_args_to_config(FIXTURES / "tiny_wavelet_patch2_config.json")
    assert (cfg.image_size, cfg.generator.resolution, cfg.generator.patch_size) == (64, 32, 2)
    assert cfg.generator.band_order == "dwt2d" and cfg.discriminator.kind == "small"
    pixel = official_args_to_config({"num_channels": 3, "image_size": 64, "ch_mult": [1, 2], "dataset": "lsun"})
    assert pixel.space == "pixel" and pixel.generator.resolution == 64 and pixel.discriminator.num_layers == 6
    with pytest.raises(ConfigError, match="unknown official argument"):
        read_official_args({"num_chanels": 12})
    with pytest.raises(ConfigError, match="half of image_size"):
        official_args_to_config({"image_size": 64, "current_resolution": 16, "ch_mult": [1]})


@pytest.mark.parametrize(
    "override, expected",
    [
        ({"diffusion.num_timesteps": 0}, "diffusion.num_timesteps=0 is too small: it must be at least 1"),
        ({"image_size": -3}, "image_size=-3 is too small: it must be at least 1"),
        ({"generator.nf": 16.5}, "config field generator.nf must be a whole number, got float 16.5"),
        ({"generator.use_fbn": 1}, "config field generator.use_fbn must be a bool, got int 1"),
        ({"train.lr_g": "fast"}, "bad value 'fast' for train.lr_g (expected float)"),  # a string: as on the CLI
        ({"generator.ch_mult": 2}, "config field generator.ch_mult must be a list, got int 2"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_are_refused_by_field(override, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        get_preset("tiny").override(override)


def test_a_stored_config_with_a_string_for_a_number_is_refused():
    d = get_preset("tiny").to_dict()
    d["diffusion"]["num_timesteps"] = "8"  # a checkpoint's embedded config is JSON: no CLI-style coercion
    with pytest.raises(ConfigError, match="diffusion.num_timesteps must be a whole number, got str '8'"):
        ExperimentConfig.from_dict(d)


def test_config_numbers_keep_their_types():
    cfg = get_preset("tiny").override({"train.lr_g": 1, "generator.ch_mult": [1, 2]})
    assert cfg.train.lr_g == 1.0 and isinstance(cfg.train.lr_g, float) and cfg.generator.ch_mult == (1, 2)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
