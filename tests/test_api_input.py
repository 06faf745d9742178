"""The Python API refuses bad input in one line, as the CLI does: devices, seeds, batch sizes, configs, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wavediff
from wavediff.checkpoints.io import save_generator
from wavediff.errors import ConfigError
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset
from wavediff.sampling import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = get_preset("tiny")
    path = save_generator(tmp_path_factory.mktemp("api") / "g.safetensors", build_generator(cfg.generator), cfg)
    return wavediff.load_generator(path), path


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
@pytest.mark.parametrize(
    "device, expected",
    [("cuda", "no CUDA GPU is available"), ("gpu", "unknown device 'gpu'"), ("xla", "not supported by wavediff")],
)
def test_an_unusable_device_is_one_line(tiny, device, expected):
    G, path = tiny
    for call in (
        lambda: wavediff.load_generator(path, device=device),
        lambda: wavediff.sample(G, [0], device=device),
        lambda: list(generate(G, [0], 1, device=device)),
    ):
        with pytest.raises(ConfigError, match=expected):
            call()


@pytest.mark.parametrize(
    "seeds, expected",
    [
        ("12", "seeds must be a list or range of integers, not str"),
        (5, "seeds must be a list or range of integers, not int"),
        (None, "seeds must be a list or range of integers, not NoneType"),
        ([1.7], "seed 1.7 is not an integer"),
        ([True], "seed True is not an integer"),
        ([-1], "seed -1 is out of range"),
        ([], "no seeds to sample"),
    ],
)
def test_seeds_that_are_not_integers_are_refused_not_misread(tiny, seeds, expected):
    with pytest.raises(ConfigError, match=expected):
        wavediff.sample(tiny[0], seeds)


def test_integer_arrays_are_seeds_too(tiny):
    G = tiny[0]
    ref = wavediff.sample(G, [3, 4], precision="fp32")
    for seeds in (range(3, 5), np.array([3, 4]), torch.tensor([3, 4]), [np.int64(3), torch.tensor(4)]):
        assert torch.equal(wavediff.sample(G, seeds, precision="fp32"), ref)


@pytest.mark.parametrize("batch", [0, -2, 1.5, True])
def test_a_batch_size_below_one_is_refused(tiny, batch):
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        generate(tiny[0], [0, 1], batch)


def test_a_config_for_another_model_is_refused(tiny):
    G = tiny[0]
    with pytest.raises(ConfigError, match="describes another model"):
        wavediff.sample(G, [0], config=G.config.override({"image_size": 64}))
    with pytest.raises(ConfigError, match="describes another model"):  # a freshly built net knows what it was built as
        wavediff.sample(build_generator(get_preset("tiny").generator), [0], config=get_preset("digits"))
    with pytest.raises(ConfigError, match="must be an ExperimentConfig"):
        wavediff.sample(G, [0], config=G.config.generator)
    assert wavediff.sample(G, [0], config=G.config).shape == (1, 3, 32, 32)  # its own is fine


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_generator_cast_by_hand_says_to_ask_for_the_precision_instead(tiny, dtype):
    G = wavediff.load_generator(tiny[1]).to(dtype)
    with pytest.raises(ConfigError, match="keep them float32 and ask for precision='bf16'"):
        wavediff.sample(G, [0])


def test_save_generator_refuses_what_could_never_be_loaded(tmp_path):
    cfg = get_preset("tiny")
    G = build_generator(cfg.generator)
    out = tmp_path / "g.safetensors"
    with pytest.raises(ConfigError, match="do not match cfg.generator"):
        save_generator(out, G, get_preset("digits"))
    with pytest.raises(ConfigError, match=r"meta key\(s\) \['config'\] are the file format's own"):
        save_generator(out, G, cfg, meta={"config": "x"})
    with pytest.raises(ConfigError, match="cfg must be the ExperimentConfig"):
        save_generator(out, G, cfg.generator)
    assert not out.exists()


def _rewrite(path, tensors=None, **meta):
    """`path` written again with some tensors or metadata changed (what a damaged or foreign file holds)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    save_file({**load_file(str(path)), **(tensors or {})}, str(path), metadata={**metadata, **meta})


def test_a_damaged_diverged_or_newer_file_is_named_as_such(tiny, tmp_path):
    import shutil

    from wavediff.errors import CheckpointError

    G, path = tiny
    name = next(iter(G.state_dict()))
    cases = [
        ({"tensors": {name: G.state_dict()[name] + 1e-3}}, "damaged: its weights fail their CRC-32 check"),
        ({"format_version": "99"}, "format version '99', which this version"),
    ]
    for change, expected in cases:
        copy = shutil.copy(path, tmp_path / "copy.safetensors")
        _rewrite(copy, **change)
        with pytest.raises(CheckpointError, match=expected):
            wavediff.load_generator(copy)
    # NaN weights, CRC matching (a run that diverged writes them so)
    nan = {k: v.clone() for k, v in G.state_dict().items()}
    nan[name].fill_(float("nan"))
    from wavediff.checkpoints.io import weights_crc32

    copy = shutil.copy(path, tmp_path / "nan.safetensors")
    _rewrite(copy, tensors={name: nan[name]}, crc32=f"{weights_crc32(nan):08x}")
    with pytest.raises(CheckpointError, match=f"holds NaN or infinite weights \\({name}\\)"):
        wavediff.load_generator(copy)


def test_the_presets_table_is_read_only():
    p = wavediff.PRESETS["tiny"]
    p.generator.nf = 7  # a copy: the table and get_preset are unchanged
    assert wavediff.PRESETS["tiny"].generator.nf == wavediff.get_preset("tiny").generator.nf != 7
    with pytest.raises(TypeError):
        wavediff.PRESETS["mine"] = p
    assert "tiny" in wavediff.PRESETS and len(wavediff.PRESETS) == len(list(wavediff.PRESETS))


def test_dir_lists_the_api_not_the_modules_internals():
    names = set(dir(wavediff))
    assert {"sample", "generate", "to_uint8", "train_run", "reorder_bands", "WaveDiffError"} <= names
    assert not names & {"annotations", "importlib", "_EXPORTS"}
