import json
import math

import pytest
import torch

from conftest import DISC_FIXTURES, FIXTURES, REF
from wavediff.checkpoints.official import official_args_to_config, read_official_state_dict
from wavediff.checkpoints.official_discriminator import (
    convert_discriminator_state,
    load_official_discriminator,
    official_discriminator_key_shapes,
)
from wavediff.config import DiscriminatorConfig
from wavediff.errors import CheckpointError, ConfigError, WaveDiffError
from wavediff.models.discriminator import MinibatchStddev, build_discriminator
from wavediff.presets import get_preset
from wavediff.wavelets import reorder_bands

PAPER_PRESETS = ["cifar10", "stl10", "celeba_256", "celeba_512", "celeba_1024", "lsun"]


def _fixture_cfg(name):
    return official_args_to_config(FIXTURES / f"{name}_config.json").discriminator


def _fixture_model(name):
    cfg = _fixture_cfg(name)
    model = build_discriminator(cfg)
    model.load_state_dict(
        convert_discriminator_state(read_official_state_dict(FIXTURES / f"{name}_netD.pth", part="D"), cfg)
    )
    return model.eval()


def _fixture_io(name):
    return torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)


def _to_canonical(x):
    # The fixture tensors are in the network's own (DWT_2D) band order.
    return reorder_bands(x, "dwt2d", "pywt")


def _tiny_cfg(**kw):
    base = dict(kind="small", in_channels=12, ngf=4, t_emb_dim=8, num_layers=3)
    base.update(kw)
    return DiscriminatorConfig(**base)


# ----------------------------------------------------------------- key lists
@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_official_key_shapes_match_reference(preset):
    cfg = get_preset(preset).discriminator
    got = [[k, list(s)] for k, s in official_discriminator_key_shapes(cfg)]
    assert got == json.loads((REF / "keys" / f"discriminator_{preset}.json").read_text())
    info = json.loads((REF / "presets" / f"{preset}.json").read_text())
    with torch.device("meta"):
        model = build_discriminator(cfg)
    assert sum(p.numel() for p in model.parameters()) == info["D_params"]
    assert len(model.state_dict()) == info["D_state_dict_keys"]
    assert type(model).__name__.lower().startswith(info["D_class"].split("_")[1])


# ------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", DISC_FIXTURES)
@pytest.mark.parametrize("batch", [2, 8])
def test_parity_with_reference(name, batch):
    model = _fixture_model(name)
    assert model.band_order == "dwt2d"  # made without use_pytorch_wavelet
    io = _fixture_io(name)
    with torch.no_grad():
        out = model(_to_canonical(io[f"x_t_B{batch}"]), io[f"t_B{batch}"], _to_canonical(io[f"x_tp1_B{batch}"]))
    assert out.shape == (batch, 1)
    torch.testing.assert_close(out, io[f"out_B{batch}"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", DISC_FIXTURES)
def test_fresh_init_reproduces_reference_init(name):
    """The fixtures hold seed-0 reference weights plus known noise: remove it and compare with our seed-0 init."""
    cfg = _fixture_cfg(name)
    official = read_official_state_dict(FIXTURES / f"{name}_netD.pth", part="D")
    noise = torch.Generator().manual_seed(4321)
    clean = {}
    for key, value in official.items():  # saved in named_parameters() order
        scale = 1.0 / math.sqrt(math.prod(value.shape[1:])) if value.dim() >= 2 else 0.1
        clean[key] = value - scale * torch.randn(value.shape, generator=noise)
    torch.manual_seed(0)
    fresh = build_discriminator(cfg).state_dict()
    expected = convert_discriminator_state(clean, cfg)
    for key, tensor in fresh.items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=1e-6, msg=key)
    # The layers the authors start at ~zero.
    assert fresh["blocks.0.conv2.weight"].abs().max() < 1e-4
    if cfg.kind == "small":
        assert fresh["head_conv.weight"].abs().max() < 1e-4
    else:
        assert fresh["head_conv.weight"].abs().max() > 1e-3


def test_load_official_discriminator_netD_and_content(tmp_path):
    name = "tiny_disc_small"
    args = FIXTURES / f"{name}_config.json"
    io = _fixture_io(name)
    x_t, t, x_tp1 = _to_canonical(io["x_t_B2"]), io["t_B2"], _to_canonical(io["x_tp1_B2"])
    model = load_official_discriminator(FIXTURES / f"{name}_netD.pth", args)
    assert not model.training and not any(p.requires_grad for p in model.parameters())  # frozen, as the generator
    with torch.no_grad():
        torch.testing.assert_close(model(x_t, t, x_tp1), io["out_B2"], rtol=1e-5, atol=1e-4)
    raw = torch.load(FIXTURES / f"{name}_netD.pth", weights_only=True)
    torch.save({"netD_dict": raw, "epoch": 3}, tmp_path / "content.pth")
    model2 = load_official_discriminator(tmp_path / "content.pth", args)
    with torch.no_grad():
        torch.testing.assert_close(model2(x_t, t, x_tp1), io["out_B2"], rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------- converter errors
def _one_line_error(fn, *needles):
    with pytest.raises(CheckpointError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg
    return msg


def test_converter_is_strict_and_names_the_wrong_setting():
    name = "tiny_disc_large"
    cfg = _fixture_cfg(name)
    official = read_official_state_dict(FIXTURES / f"{name}_netD.pth", part="D")

    def variant(**kw):
        return DiscriminatorConfig(**{**cfg.__dict__, **kw})

    # Wrong number of layers: the checkpoint has conv5, the config stops at conv4 (or wants conv6).
    _one_line_error(
        lambda: convert_discriminator_state(official, variant(num_layers=4)),
        "unexpected key conv5.",
        "num_disc_layers: checkpoint 5, config 4",
    )
    _one_line_error(
        lambda: convert_discriminator_state(official, variant(num_layers=6)),
        "lacks conv6.",
        "num_disc_layers: checkpoint 5, config 6",
    )
    _one_line_error(
        lambda: convert_discriminator_state(official, variant(ngf=16)),
        "start_conv.weight",
        "ngf: checkpoint 8, config 16",
    )
    _one_line_error(
        lambda: convert_discriminator_state(official, variant(t_emb_dim=32)),
        "t_embed.main.0.weight",
        "t_emb_dim: checkpoint 16, config 32",
    )
    _one_line_error(
        lambda: convert_discriminator_state(official, variant(in_channels=3, band_order="pywt")),
        "start_conv.weight",
        "num_channels: checkpoint 12, config 3",
    )
    _one_line_error(
        lambda: convert_discriminator_state(official, variant(kind="small", num_layers=4)),
        "conv1.conv1.0.weight",
        "checkpoint large, config small",
    )
    dropped = dict(official)
    dropped.pop("conv2.dense_t1.bias")
    _one_line_error(
        lambda: convert_discriminator_state(dropped, cfg), "lacks conv2.dense_t1.bias", "1 missing, 0 unexpected"
    )
    extra = dict(official, **{"local_end_linear.weight": torch.zeros(1, 64)})
    _one_line_error(
        lambda: convert_discriminator_state(extra, cfg), "unexpected key local_end_linear.weight", "use_local_loss"
    )


# ------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    "batch,ok", [(1, True), (3, True), (4, True), (5, False), (6, False), (7, False), (8, True), (9, False), (12, True)]
)
def test_minibatch_stddev_batch_sizes(batch, ok):
    model = build_discriminator(_tiny_cfg()).eval()
    x = torch.randn(batch, 12, 8, 8)
    t = torch.zeros(batch, dtype=torch.long)
    if ok:
        assert model(x, t, x).shape == (batch, 1)
    else:
        with pytest.raises(WaveDiffError, match="multiple of 4") as e:
            model(x, t, x)
        assert "\n" not in str(e.value)
        with pytest.raises(WaveDiffError, match="multiple of 4"):
            MinibatchStddev()(torch.randn(batch, 3, 2, 2))


def test_minibatch_stddev_matches_definition():
    x = torch.randn(8, 5, 3, 2, dtype=torch.float64)
    out = MinibatchStddev(4)(x)
    assert out.shape == (8, 6, 3, 2)
    for b in range(8):
        group = x[b % 2 :: 2]  # strided groups of 4: samples {0, 2, 4, 6} and {1, 3, 5, 7}
        expected = torch.sqrt(group.var(dim=0, unbiased=False) + 1e-8).mean()
        torch.testing.assert_close(out[b, 5], expected.expand(3, 2))
    torch.testing.assert_close(out[:, :5], x)


@pytest.mark.parametrize(
    "kind,layers,minimum", [("small", 3, 4), ("small", 4, 8), ("large", 3, 8), ("large", 5, 32), ("large", 6, 64)]
)
def test_too_small_input_names_minimum(kind, layers, minimum):
    model = build_discriminator(_tiny_cfg(kind=kind, num_layers=layers)).eval()
    t = torch.zeros(2, dtype=torch.long)
    ok = torch.randn(2, 12, minimum, minimum + 3)
    assert model(ok, t, ok).shape == (2, 1)
    small = torch.randn(2, 12, minimum - 1, minimum)
    with pytest.raises(WaveDiffError, match=f"at least {minimum}x{minimum}"):
        model(small, t, small)


def test_shape_and_config_errors():
    model = build_discriminator(_tiny_cfg())
    x = torch.randn(2, 12, 8, 8)
    with pytest.raises(WaveDiffError, match="12-channel"):
        model(x[:, :3], torch.zeros(2, dtype=torch.long), x[:, :3])
    with pytest.raises(WaveDiffError, match="same shape"):
        model(x, torch.zeros(2, dtype=torch.long), x[:, :, :4])
    with pytest.raises(WaveDiffError, match="t of shape"):
        model(x, torch.zeros(3, dtype=torch.long), x)
    with pytest.raises(ConfigError, match="kind"):
        build_discriminator(_tiny_cfg(kind="medium"))
    with pytest.raises(ConfigError, match="num_layers"):
        build_discriminator(_tiny_cfg(num_layers=2))


def test_num_layers_out_of_range_is_rejected_but_official_args_are_capped():
    with pytest.raises(ConfigError, match="3 to 4 for the small"):
        build_discriminator(_tiny_cfg(kind="small", num_layers=6))
    with pytest.raises(ConfigError, match="3 to 6 for the large"):
        build_discriminator(_tiny_cfg(kind="large", num_layers=8))
    # The authors' classes cap silently (small 4, large 6); reading their arguments applies that cap.
    cfg = official_args_to_config({"dataset": "cifar10", "num_disc_layers": 6, "current_resolution": 16})
    assert cfg.discriminator.num_layers == 4
    assert len(build_discriminator(cfg.discriminator).blocks) == 4


def test_dwt2d_band_order_is_adapted_at_the_boundary():
    torch.manual_seed(0)
    canonical = build_discriminator(_tiny_cfg()).eval()
    dwt2d = build_discriminator(_tiny_cfg(band_order="dwt2d")).eval()
    dwt2d.load_state_dict(canonical.state_dict())
    x_t, x_tp1 = torch.randn(2, 2, 12, 8, 8).unbind(0)
    t = torch.tensor([0, 3])
    with torch.no_grad():
        expected = canonical(reorder_bands(x_t, "pywt", "dwt2d"), t, reorder_bands(x_tp1, "pywt", "dwt2d"))
        torch.testing.assert_close(dwt2d(x_t, t, x_tp1), expected)
        # x_t and x_tp1 play different roles.
        assert not torch.allclose(canonical(x_t, t, x_tp1), canonical(x_tp1, t, x_t))


def test_patch_size_packs_channels():
    cfg = _tiny_cfg(patch_size=2)
    model = build_discriminator(cfg).eval()
    assert model.stem.in_channels == 2 * 12 * 4 and model.min_size == 8
    x = torch.randn(2, 12, 8, 8)
    assert model(x, torch.zeros(2, dtype=torch.long), x).shape == (2, 1)
    with pytest.raises(WaveDiffError, match="at least 8x8"):
        model(x[..., :6, :6], torch.zeros(2, dtype=torch.long), x[..., :6, :6])


# ----------------------------------------------------------------- R1 grads
def test_r1_penalty_double_backward():
    torch.manual_seed(0)
    model = build_discriminator(_tiny_cfg(kind="large", num_layers=3))
    x_t = torch.randn(4, 12, 8, 8, requires_grad=True)
    x_tp1 = torch.randn(4, 12, 8, 8)
    t = torch.tensor([0, 1, 2, 3])
    out = model(x_t, t, x_tp1)
    (grad,) = torch.autograd.grad(out.sum(), x_t, create_graph=True)
    penalty = grad.pow(2).reshape(4, -1).sum(1).mean()
    penalty.backward()
    # The last bias does not affect the input gradient, so it gets none; every weight does.
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.blocks[0].conv1.weight.grad.abs().sum() > 0
    assert model.blocks[-1].skip.weight.grad.abs().sum() > 0


def test_double_backward_gradgradcheck():
    torch.manual_seed(0)
    # Second derivatives through the FIR downsampling (small: 2 of the 3 blocks downsample).
    cfg = DiscriminatorConfig(kind="small", in_channels=4, ngf=1, t_emb_dim=4, num_layers=3)
    model = build_discriminator(cfg).double()
    for p in model.parameters():  # lift the ~zero-initialised layers so every path matters
        p.data.add_(0.3 * torch.randn_like(p))
    x_tp1 = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    t = torch.tensor([1])
    x_t = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: model(x, t, x_tp1), (x_t,))


def test_segments_judge_stacked_batches_like_separate_calls():
    cfg = get_preset("cifar10").discriminator
    torch.manual_seed(0)
    D = build_discriminator(cfg)
    x, y, t = torch.randn(16, 12, 16, 16), torch.randn(16, 12, 16, 16), torch.randint(0, 4, (16,))
    with torch.no_grad():
        D.head_conv.weight.normal_(0, 0.05)  # the small head starts at zero, which would hide the stddev channel
        joint = D(x, t, y, segments=2)
        apart = torch.cat([D(x[:8], t[:8], y[:8]), D(x[8:], t[8:], y[8:])])
        mixed = D(x, t, y)  # one batch of 16: its stddev groups mix the halves
    torch.testing.assert_close(joint, apart, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mixed, apart, rtol=1e-5, atol=1e-6)
    with pytest.raises(WaveDiffError, match="cannot be split into 3 equal segments"):
        D(x, t, y, segments=3)
