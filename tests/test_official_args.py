"""--official-args: wrong value types, files that are not JSON objects, and our own checkpoint given with a
description are each one line naming the problem, never a traceback or a silently different model."""

import json

import pytest

from conftest import FIXTURES, run_cli
from wavediff.checkpoints.convert import convert_official_checkpoint, load_any_generator
from wavediff.checkpoints.official import official_args_to_config, read_official_args
from wavediff.errors import CheckpointError, ConfigError

NETG = FIXTURES / "tiny_wavelet_netG.pth"
ARGS = FIXTURES / "tiny_wavelet_config.json"


def assert_one_error_line(code, err, *needles):
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def args_with(tmp_path, **changes):
    """The fixture's arguments with some values replaced, written as args.json."""
    args = json.loads(ARGS.read_text())
    args.update(changes)
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    return path


BAD_VALUES = [
    ("ch_mult", "1,2,2", "a list of positive integers"),
    ("ch_mult", 122, "a list of positive integers"),
    ("ch_mult", [1, "two", 2], "a list of positive integers"),
    ("image_size", "abc", "a positive integer"),
    ("image_size", 32.5, "a positive integer"),
    ("nz", None, "a positive integer"),
    ("nz", True, "a positive integer"),
    ("num_res_blocks", -1, "a non-negative integer"),
    ("not_use_tanh", "false", "true or false"),
    ("use_ema", 1, "true or false"),
    ("beta_max", "high", "a finite number"),
    ("beta_max", None, "a finite number"),
    ("attn_resolutions", "8,16", "a non-negative integer or a list of them"),
    ("fir_kernel", "1331", "a list of integers"),
    ("progressive", "fancy", 'one of "none", "output_skip", "residual"'),
    ("embedding_type", 3, 'one of "positional", "fourier"'),
    ("net_type", 5, "a non-empty string"),
    ("lazy_reg", "often", "a non-negative integer"),
]


@pytest.mark.parametrize("key,value,expected", BAD_VALUES)
def test_a_wrong_value_type_names_the_argument(tmp_path, key, value, expected):
    path = args_with(tmp_path, **{key: value})
    with pytest.raises(ConfigError) as e:
        official_args_to_config(path)
    message = str(e.value)
    assert message.startswith(f"{key} in {path} is {json.dumps(value)}; give {expected}")
    assert "\n" not in message


def test_a_wrong_value_in_a_dict_names_the_argument_as_written():
    with pytest.raises(ConfigError, match=r'^--ch-mult in the official arguments is "1 2 2"; give a list'):
        read_official_args({"--ch-mult": "1 2 2"})


@pytest.mark.parametrize("command", ["sample", "convert-official"])
@pytest.mark.parametrize("key,value", [("ch_mult", "1,2,2"), ("not_use_tanh", "false"), ("nz", None)])
def test_a_wrong_value_type_is_one_line_in_the_cli(tmp_path, capsys, command, key, value):
    path = args_with(tmp_path, **{key: value})
    out = tmp_path / ("x.safetensors" if command == "convert-official" else "x.png")
    extra = ["-o", out] if command == "convert-official" else ["--n", 1, "--out", out, "--device", "cpu"]
    code, _, err = run_cli(capsys, command, NETG, "--official-args", path, *extra)
    assert_one_error_line(code, err, f"{key} in {path} is {json.dumps(value)}")
    assert not out.exists()


def test_valid_authors_values_keep_working(tmp_path):
    reference = official_args_to_config(ARGS)
    assert reference.generator.ch_mult == (1, 2, 2) and reference.generator.use_tanh is True
    # JSON integers where their argparse has type=float, a run.sh value copied as a string, a bare attention
    # resolution, a null lazy_reg and arguments the converter does not read: all as before.
    same = official_args_to_config(
        args_with(tmp_path, beta_max=20, image_size="32", attn_resolutions=8, lazy_reg=None, master_port="6002")
    )
    assert same == reference
    assert same.diffusion.beta_max == 20.0 and type(same.diffusion.beta_max) is float
    assert type(same.image_size) is int
    flipped = official_args_to_config(args_with(tmp_path, not_use_tanh=True))
    assert flipped.generator.use_tanh is False


def test_a_null_ch_mult_still_says_to_add_it(tmp_path):
    with pytest.raises(ConfigError, match="lack ch_mult"):
        convert_official_checkpoint(NETG, tmp_path / "x.safetensors", official_args=args_with(tmp_path, ch_mult=None))


@pytest.mark.parametrize("command", ["sample", "convert-official"])
def test_a_binary_file_as_official_args_is_one_line(tmp_path, capsys, command):
    out = tmp_path / ("x.safetensors" if command == "convert-official" else "x.png")
    extra = ["-o", out] if command == "convert-official" else ["--n", 1, "--out", out, "--device", "cpu"]
    code, _, err = run_cli(capsys, command, NETG, "--official-args", NETG, *extra)
    assert_one_error_line(code, err, "is not a JSON file of the authors' training arguments", "run.sh")
    assert not out.exists()


@pytest.mark.parametrize(
    "content,needle",
    [
        ("[1, 2, 3]", "holds a JSON list, not an object"),
        ('"ch_mult"', "holds a JSON string, not an object"),
        ("{'ch_mult': [1, 2]}", "is not valid JSON"),
        ("", "is not valid JSON"),
    ],
)
def test_a_json_file_that_is_not_an_object_is_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "args.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        read_official_args(path)
    code, _, err = run_cli(capsys, "convert-official", NETG, "--official-args", path, "-o", tmp_path / "x.safetensors")
    assert_one_error_line(code, err, needle)


@pytest.fixture
def converted(tmp_path, capsys):
    out = tmp_path / "tw.safetensors"
    code, _, _ = run_cli(capsys, "convert-official", NETG, "--official-args", ARGS, "-o", out)
    assert code == 0
    return out


@pytest.mark.parametrize("describe", [["--preset", "tiny"], ["--official-args", ARGS]])
def test_sampling_our_checkpoint_with_a_description_says_to_drop_it(converted, tmp_path, capsys, describe):
    out = tmp_path / "x.png"
    code, _, err = run_cli(capsys, "sample", converted, *describe, "--n", 1, "--out", out, "--device", "cpu")
    assert_one_error_line(code, err, "already a wavediff checkpoint", "drop --preset/--official-args")
    assert not out.exists()
    with pytest.raises(ConfigError, match="already a wavediff checkpoint"):
        load_any_generator(converted, preset="tiny")
    # renamed, it is still recognised by its header
    renamed = converted.rename(tmp_path / "netG_100.pth")
    with pytest.raises(ConfigError, match="already a wavediff checkpoint"):
        load_any_generator(renamed, preset="tiny")


@pytest.mark.parametrize("describe", [["--preset", "tiny"], ["--official-args", ARGS]])
def test_converting_our_checkpoint_again_says_it_is_converted(converted, tmp_path, capsys, describe):
    out = tmp_path / "again.safetensors"
    code, _, err = run_cli(capsys, "convert-official", converted, *describe, "-o", out)
    assert_one_error_line(code, err, "already a wavediff checkpoint", "nothing to convert")
    assert not out.exists()
    with pytest.raises(CheckpointError, match="nothing to convert"):
        convert_official_checkpoint(converted, out, preset="tiny")


def test_our_checkpoint_without_a_description_still_loads(converted):
    generator, cfg = load_any_generator(converted)
    assert cfg.generator.ch_mult == (1, 2, 2) and not generator.training
