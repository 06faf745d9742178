"""convert-official, sample and bench end to end, and our checkpoint format's failure modes."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import wavediff
from conftest import FIXTURES, run_cli
from wavediff.checkpoints.io import atomic_write, load_generator, save_generator
from wavediff.cli import main
from wavediff.errors import CheckpointError, ConfigError
from wavediff.presets import get_preset
from wavediff.wavelets import reorder_bands

NETG = FIXTURES / "tiny_wavelet_netG.pth"
ARGS = FIXTURES / "tiny_wavelet_config.json"


@pytest.fixture
def converted(tmp_path, capsys):
    out = tmp_path / "tw.safetensors"
    code, stdout, _ = run_cli(capsys, "convert-official", NETG, "--official-args", ARGS, "-o", out)
    assert code == 0 and "419,276 parameters" in stdout and "band order dwt2d" in stdout
    return out


def test_converted_checkpoint_reproduces_the_authors_outputs(converted):
    G = load_generator(converted)
    assert not G.training and G.config.generator.band_order == "dwt2d"
    io = torch.load(FIXTURES / "tiny_wavelet_io.pt", weights_only=True)
    with torch.no_grad():
        out = G(reorder_bands(io["x"], "dwt2d", "pywt"), io["t"], io["z"])
    torch.testing.assert_close(reorder_bands(out, "pywt", "dwt2d"), io["out"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--official-args", FIXTURES / "tiny_normal_config.json"], "check num_channels_dae"),
        (["--preset", "cifar10"], "expected shape"),
    ],
)
def test_convert_with_wrong_settings_is_one_line(tmp_path, capsys, argv, needle):
    code, _, err = run_cli(capsys, "convert-official", NETG, *argv, "-o", tmp_path / "x.safetensors")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("content", [b"hello", NETG.read_bytes()[:100_000], None])
def test_convert_bad_files_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "netG_1.pth"
    if content is not None:
        bad.write_bytes(content)
    code, _, err = run_cli(capsys, "convert-official", bad, "--preset", "cifar10", "-o", tmp_path / "x.safetensors")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert ("not found" in err) if content is None else ("not a readable PyTorch checkpoint" in err)


def test_convert_needs_exactly_one_description(tmp_path, capsys):
    code, _, err = run_cli(capsys, "convert-official", NETG, "-o", tmp_path / "x.safetensors")
    assert code == 2 and "give --preset NAME or --official-args ARGS.json" in err  # a netG_*.pth carries none
    with pytest.raises(SystemExit) as e:  # both: argparse refuses
        main(["convert-official", str(NETG), "--preset", "tiny", "--official-args", str(ARGS), "-o", "x.safetensors"])
    assert e.value.code == 2
    assert not (tmp_path / "x.safetensors").exists()


def test_sample_depends_only_on_the_seed(converted, tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    fp32 = ["--precision", "fp32"]  # bf16 kernels round differently per batch size (README: Sampling)
    assert run_cli(capsys, "sample", converted, "--seeds", "0-5", "--batch", "4", "--out", a, *fp32)[0] == 0
    assert run_cli(capsys, "sample", converted, "--seeds", "3-5", "--batch", "1", "--out", b, *fp32)[0] == 0
    ia, ib = np.load(a)["images"], np.load(b)["images"]
    assert ia.shape == (6, 32, 32, 3) and ia.dtype == np.uint8
    # the same images across batch sizes, up to float rounding: CPU kernels sum in a batch-size-dependent order
    # (about 4e-6 here), which moves a rare value across a rounding boundary (README: Sampling)
    diff = np.abs(ia[3:].astype(int) - ib)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * diff.size
    assert not np.array_equal(ia[0], ia[1])
    # the Python API gives the same images (same batch size: bit for bit), at the default precision too
    G = load_generator(converted)
    api = wavediff.sample(G, seeds=[4], precision="fp32")
    assert np.array_equal(wavediff.sampling.to_uint8(api)[0], ib[1])
    default = tmp_path / "default.npz"
    assert run_cli(capsys, "sample", converted, "--seeds", "4", "--out", default)[0] == 0
    assert np.array_equal(wavediff.sampling.to_uint8(wavediff.sample(G, seeds=[4]))[0], np.load(default)["images"][0])
    # the API checks seeds as the CLI does: one line, never an empty stack or a seed that wraps around
    for seeds, message in (([], "no seeds to sample"), ([-1], "seed -1 is out of range"), ([2**63], "out of range")):
        with pytest.raises(ConfigError, match=message):
            wavediff.sample(G, seeds=seeds)


def test_sample_folder_grid_and_authors_checkpoint(converted, tmp_path, capsys):
    assert run_cli(capsys, "sample", converted, "--seeds", "7,9", "--out", tmp_path / "dir")[0] == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["seed000007.png", "seed000009.png"]
    grid = tmp_path / "grid.png"
    assert run_cli(capsys, "sample", NETG, "--official-args", ARGS, "--n", 4, "--out", grid)[0] == 0
    from PIL import Image

    assert Image.open(grid).size == (64, 64)
    code, _, err = run_cli(capsys, "sample", NETG, "--n", 2, "--out", grid)
    assert code == 2 and "--preset NAME or --official-args" in err
    code, _, err = run_cli(capsys, "sample", converted, "--n", 3, "--seeds", "0-1", "--out", grid)
    assert code == 2 and "disagrees" in err


def test_sample_to_a_non_png_image_name_is_refused_not_made_a_folder(converted, tmp_path, capsys):
    jpg = tmp_path / "grid.jpg"
    code, _, err = run_cli(capsys, "sample", converted, "--n", 2, "--out", jpg)
    assert code == 2 and "use GRID.png" in err and not jpg.exists()
    folder = f"{tmp_path / 'pics.jpg'}/"  # a trailing slash says "folder"
    assert run_cli(capsys, "sample", converted, "--n", 1, "--out", folder)[0] == 0
    assert [p.name for p in (tmp_path / "pics.jpg").iterdir()] == ["seed000000.png"]


def test_bench_runs_the_paper_protocol_with_few_runs(converted, capsys):
    code, out, _ = run_cli(capsys, "bench", converted, "--runs", 2, "--warmup", 1, "--batch", 4, "--precision", "fp32")
    # a 419k-parameter model: no layer is wide enough for Winograd, so the setting does not name it
    assert code == 0 and "batch 4, fp32, device cpu" in out and "time/batch" in out
    auto = wavediff.fastpath.FastPath().describe(
        "cpu", load_generator(converted)
    )  # "bf16, channels_last" where the CPU has native bf16
    code, out, _ = run_cli(capsys, "bench", converted, "--runs", 1, "--warmup", 0, "--batch", 2)
    assert code == 0 and f"batch 2, {auto}, device cpu" in out
    code, out, _ = run_cli(capsys, "bench", "--preset", "tiny_pixel", "--runs", 1, "--warmup", 0, "--batch", 2)
    assert code == 0 and "32px pixel" in out


def test_bench_json_says_what_it_timed_and_where(converted, tmp_path, capsys):
    report = tmp_path / "b.json"
    code, _, _ = run_cli(capsys, "bench", converted, "--runs", 2, "--warmup", 0, "--batch", 2, "--json", report)
    r = json.loads(report.read_text())
    assert (
        code == 0
        and r["batch"] == 2
        and r["runs"] == 2
        and r["warmup"] == 0
        and r["threads"] == torch.get_num_threads()
    )
    assert r["mean"] > 0 and r["device"] == "cpu" and r["machine"].endswith("cores") and r["model"] == str(converted)


def test_our_format_round_trip_and_failure_modes(tmp_path):
    cfg = get_preset("tiny")
    G = wavediff.build_generator(cfg.generator)
    path = save_generator(tmp_path / "g.safetensors", G, cfg, meta={"step": 7})
    again = load_generator(path)
    assert again.config == cfg
    for k, v in G.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    path.with_name("trunc.safetensors").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_generator(path.with_name("trunc.safetensors"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a wavediff generator"):
        load_generator(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "nope.safetensors")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        open(tmp, "wb").write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_the_lazy_api_is_listed_for_dir_help_and_tab_completion():
    names = set(dir(wavediff))
    assert set(wavediff.__all__) <= names and "__version__" in names
    assert all(callable(getattr(wavediff, n)) or n == "PRESETS" for n in wavediff.__all__)


def test_bench_says_when_the_compile_is_timed(capsys):
    # refused afterwards (an unwritable --json), so nothing compiles here; the note comes first
    code, _, err = run_cli(capsys, "bench", "--preset", "tiny", "--compile", "--warmup", 0, "--json", "/proc/x/b.json")
    assert code == 2 and "the first timed run includes the compile" in err.splitlines()[0]
    code, _, err = run_cli(capsys, "bench", "--preset", "tiny", "--compile", "--json", "/proc/x/b.json")
    assert code == 2 and "includes the compile" not in err
