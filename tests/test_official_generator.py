"""Parity with the authors' generator (fixtures made by their code) and the checkpoint converter."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from conftest import FIXTURES, GENERATOR_FIXTURES, REF
from wavediff import load_official_generator
from wavediff.checkpoints.official import official_args_to_config, read_official_state_dict
from wavediff.checkpoints.official_generator import convert_generator_state, official_generator_key_shapes
from wavediff.errors import CheckpointError, ConfigError
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset
from wavediff.wavelets import reorder_bands

PAPER_PRESETS = ["cifar10", "stl10", "celeba_256", "celeba_512", "celeba_1024", "lsun"]


def fixture_cfg(name):
    return official_args_to_config(FIXTURES / f"{name}_config.json").generator


def fixture_state(name):
    return read_official_state_dict(FIXTURES / f"{name}_netG.pth")


@pytest.mark.parametrize("name", GENERATOR_FIXTURES)
def test_parity_with_reference(name):
    cfg = fixture_cfg(name)
    assert cfg.band_order == "dwt2d"  # fixtures were made with the authors' DWT_2D backend
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    G = build_generator(cfg)
    G.load_state_dict(convert_generator_state(fixture_state(name), cfg))
    G.eval()
    # The fixtures' x/out are in the network's own (dwt2d) order; our module takes canonical order.
    x = reorder_bands(io["x"], "dwt2d", "pywt")
    with torch.no_grad():
        out = reorder_bands(G(x, io["t"], io["z"]), "pywt", "dwt2d")
        G.cfg = dataclasses.replace(cfg, use_tanh=False)
        pre = reorder_bands(G(x, io["t"], io["z"]), "pywt", "dwt2d")
        if "zemb" in io:
            torch.testing.assert_close(G.net.z_mapping(io["z"]), io["zemb"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out, io["out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(pre, io["pre_tanh"], atol=1e-5, rtol=0)


def test_layer_trace_of_tiny_wavelet():
    """Every block's output matches the authors' `all_modules.<i>` output, call by call."""
    name = "tiny_wavelet"
    cfg = fixture_cfg(name)
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    trace = torch.load(FIXTURES / f"{name}_trace.pt", weights_only=True)["trace"]
    G = build_generator(cfg)
    G.load_state_dict(convert_generator_state(fixture_state(name), cfg))
    G.eval()
    seen: dict[int, list] = {}
    order = G.official_order()
    hooks = [
        m.register_forward_hook(lambda mod, args, out, i=i: seen.setdefault(i, []).append(out))
        for i, m in enumerate(order)
    ]
    with torch.no_grad():
        G(reorder_bands(io["x"], "dwt2d", "pywt"), io["t"], io["z"])
    for h in hooks:
        h.remove()
    assert len(order) == sum(k.startswith("all_modules.") for k in trace)
    for i in range(len(order)):
        ref_calls = trace[f"all_modules.{i}"]
        assert len(seen[i]) == len(ref_calls), f"all_modules.{i} called {len(seen[i])} times"
        for ours, ref in zip(seen[i], ref_calls):
            ours = list(ours) if isinstance(ours, (tuple, list)) else [ours]
            if len(ref) == 4 and len(ours) == 2:  # down block: their (out, (LH, HL, HH)) vs our (out, highs)
                ours = [ours[0], *ours[1].chunk(3, dim=1)]
            for a, b in zip(ours, ref):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"all_modules.{i}")


def _number(tok: str):
    for kind in (int, float):
        try:
            return kind(tok)
        except ValueError:
            pass
    return tok


def _argv_to_official(argv: list[str]) -> dict:
    """The authors' argparse command line as a dict (values after each --flag; bare flags are True)."""
    out: dict = {}
    key = None
    for tok in argv:
        if tok.startswith("--"):
            key = tok[2:]
            out[key] = []
        else:
            out[key].append(_number(tok))
    lists = {"ch_mult", "attn_resolutions", "fir_kernel"}
    return {k: (True if not v else v if k in lists else v[0]) for k, v in out.items()}


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_preset_key_list_and_param_count(preset):
    info = json.loads((REF / "presets" / f"{preset}.json").read_text())
    cfg = get_preset(preset).generator
    assert dataclasses.asdict(official_args_to_config(_argv_to_official(info["argv"])).generator) == dataclasses.asdict(
        cfg
    )
    keys = official_generator_key_shapes(cfg)
    expected = [(k, tuple(s)) for k, s in json.loads((REF / "keys" / f"generator_{preset}.json").read_text())]
    assert keys == expected
    assert sum(math.prod(s) for _, s in keys) == info["G_params"]


def test_converted_model_param_count_matches_cifar10():
    cfg = get_preset("cifar10").generator
    with torch.device("meta"):
        G = build_generator(cfg)
    assert sum(p.numel() for p in G.parameters()) == 33_370_124


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_converter_rejects_missing_key():
    sd = fixture_state("tiny_wavelet")
    del sd["all_modules.3.Conv_0.weight"]
    with pytest.raises(CheckpointError) as e:
        convert_generator_state(sd, fixture_cfg("tiny_wavelet"))
    msg = _one_line(e)
    assert "all_modules.3.Conv_0.weight" in msg and "1 missing" in msg and "ch_mult" in msg


def test_converter_rejects_unexpected_key():
    sd = fixture_state("tiny_wavelet")
    sd["all_modules.99.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        convert_generator_state(sd, fixture_cfg("tiny_wavelet"))
    assert "all_modules.99.weight" in _one_line(e)


def test_converter_rejects_wrong_settings():
    cfg = dataclasses.replace(fixture_cfg("tiny_wavelet"), nf=32)
    with pytest.raises(CheckpointError) as e:
        convert_generator_state(fixture_state("tiny_wavelet"), cfg)
    msg = _one_line(e)
    assert "expected shape" in msg and "num_channels_dae" in msg
    # a wavelet checkpoint read as a plain NCSN++ one
    with pytest.raises(CheckpointError):
        convert_generator_state(fixture_state("tiny_wavelet"), fixture_cfg("tiny_normal"))


def test_every_official_tensor_used_once():
    sd = fixture_state("tiny_wavelet_t2")
    ours = convert_generator_state(sd, fixture_cfg("tiny_wavelet_t2"))
    assert len(ours) == len(sd)
    assert {id(t) for t in ours.values()} == {id(t) for t in sd.values()}


def test_load_official_generator(tmp_path):
    name = "tiny_wavelet"
    # The public contract: official_args as a JSON path or a dict; canonical band order in and out.
    G = load_official_generator(FIXTURES / f"{name}_netG.pth", FIXTURES / f"{name}_config.json")
    assert not G.training and G.config.generator.band_order == "dwt2d"
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    with torch.no_grad():
        out = G(reorder_bands(io["x"], "dwt2d", "pywt"), io["t"], io["z"])
    torch.testing.assert_close(reorder_bands(out, "pywt", "dwt2d"), io["out"], atol=1e-5, rtol=0)
    # or by the preset it was trained with (the fixture is the `tiny` setting); a preset name where the
    # arguments go says which keyword it wants
    by_preset = load_official_generator(FIXTURES / f"{name}_netG.pth", preset="tiny")
    for a, b in zip(G.state_dict().values(), by_preset.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="is a preset name.*preset='tiny'"):
        load_official_generator(FIXTURES / f"{name}_netG.pth", "tiny")


def _authors_content_pth(path, name="tiny_wavelet"):
    """A `content.pth` as the authors' train_wddgan.py saves it: their argparse Namespace (with image_size replaced
    by current_resolution and the launcher's fields added, as their script does before saving), G and D state
    dicts, Adam and cosine-schedule state dicts."""
    import argparse

    from wavediff.checkpoints.official import OFFICIAL_DEFAULTS

    given = {k: v for k, v in json.loads((FIXTURES / f"{name}_config.json").read_text()).items() if k[0] != "_"}
    args = argparse.Namespace(**{**OFFICIAL_DEFAULTS, **given})
    args.ori_image_size, args.image_size = args.image_size, args.current_resolution
    args.world_size, args.local_rank, args.global_rank = 1, 0, 0
    netG = read_official_state_dict(FIXTURES / f"{name}_netG.pth")
    params = [torch.nn.Parameter(torch.randn(3, 2))]
    opt = torch.optim.Adam(params, lr=1e-3)
    params[0].sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10, eta_min=1e-5)
    content = {"epoch": 3, "global_step": 30, "args": args, "netG_dict": netG, "optimizerG": opt.state_dict()}
    content |= {"schedulerG": sched.state_dict(), "netD_dict": {"t_embed.main.1.weight": torch.zeros(2, 2)}}
    content |= {"optimizerD": opt.state_dict(), "schedulerD": sched.state_dict()}
    torch.save(content, path)
    return path


def test_the_authors_content_pth_loads_with_the_arguments_it_carries(tmp_path, capsys):
    from conftest import run_cli
    from wavediff import load_generator

    content = _authors_content_pth(tmp_path / "content.pth")
    io = torch.load(FIXTURES / "tiny_wavelet_io.pt", weights_only=True)
    expected = load_official_generator(FIXTURES / "tiny_wavelet_netG.pth", FIXTURES / "tiny_wavelet_config.json")
    G = load_official_generator(content)  # no arguments or preset: they are inside
    assert G.config.image_size == 32 and G.config.generator.band_order == "dwt2d"
    for a, b in zip(G.state_dict().values(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        out = G(reorder_bands(io["x"], "dwt2d", "pywt"), io["t"], io["z"])
    torch.testing.assert_close(reorder_bands(out, "pywt", "dwt2d"), io["out"], atol=1e-5, rtol=0)
    # the CLI: convert and sample without --preset / --official-args
    code, out_text, err = run_cli(capsys, "convert-official", content, "-o", tmp_path / "c.safetensors")
    assert code == 0 and "32px wavelet space" in out_text, err
    converted = load_generator(tmp_path / "c.safetensors").state_dict()
    assert converted.keys() == G.state_dict().keys()
    assert all(torch.equal(converted[k], v) for k, v in G.state_dict().items())
    code, _, err = run_cli(capsys, "sample", content, "--n", 1, "--out", tmp_path / "one.png")
    assert code == 0 and (tmp_path / "one.png").exists(), err
    # a netG_<epoch>.pth carries no arguments: still one line asking for them
    with pytest.raises(ConfigError, match="only their content.pth carries"):
        load_official_generator(FIXTURES / "tiny_wavelet_netG.pth")
    # our own file given to the authors' loader
    with pytest.raises(CheckpointError, match="already a wavediff checkpoint.*load_generator"):
        load_official_generator(tmp_path / "c.safetensors")


def test_a_pickle_with_other_python_objects_is_refused_in_one_plain_line(tmp_path):
    import fractions

    odd = tmp_path / "odd.pth"
    torch.save({"netG_dict": {"w": torch.zeros(1)}, "args": fractions.Fraction(1, 3)}, odd)
    with pytest.raises(CheckpointError) as info:
        read_official_state_dict(odd)
    message = str(info.value)
    assert "holds Python objects other than tensors" in message and "fractions.Fraction" in message
    assert "\x1b[" not in message and "download it again" not in message
