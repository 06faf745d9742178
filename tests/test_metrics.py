"""Metrics: Frechet distance, streaming statistics, pytorch-fid parity, the paper's JPEG protocol,
statistics files (incl. the authors' pickled .npy), and precision/recall against brute force."""

from __future__ import annotations

import os
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from wavediff.errors import DataError, WaveDiffError
from wavediff.metrics import (
    FIDStats,
    GaussianStats,
    InceptionFeatures,
    VGG16Features,
    fid_stats,
    folder_source,
    frechet_distance,
    iter_images,
    load_stats,
    manifold_radii,
    npz_source,
    precision_recall,
    save_stats,
)
from wavediff.metrics.images import jpeg_roundtrip
from wavediff.metrics.sources import ImageSource

# pytorch-fid 0.3.0 still passes scipy's deprecated `disp` to sqrtm
pytestmark = pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")


def random_fid_inception_weights(path) -> None:
    """A randomly initialised state dict with the layout of pt_inception-2015-12-05-6726825d.pth."""
    import pytorch_fid.inception as pfi

    torch.manual_seed(0)
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    for m in net.modules():  # variance-preserving, so features neither vanish nor explode
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    torch.save(net.state_dict(), path)


def write_pngs(folder, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")


def smooth_images(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Blurry colour blobs (unlike uniform noise, they survive JPEG recognisably)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((size, size), Image.BILINEAR)) for s in small])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_fid_inception.pth"
    random_fid_inception_weights(path)
    return path


# --- Frechet distance ------------------------------------------------------------------------------------------


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    d1, d2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_closed_form():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))  # shared eigenvectors -> S1 S2 = Q D1 D2 Q^T
    d1, d2 = rng.uniform(0.1, 2, 12), rng.uniform(0.1, 2, 12)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    mu = rng.normal(size=12)
    expected = np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_singular_covariances_are_finite():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 64)), rng.normal(size=(5, 64)) + 1  # rank-4 covariances in 64 dims
    value = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert np.isfinite(value) and value > 0


def test_frechet_distance_rejects_different_dimensions():
    with pytest.raises(WaveDiffError, match="different feature dimensions"):
        frechet_distance(np.zeros(4), np.eye(4), np.zeros(8), np.eye(8))


def test_gaussian_stats_match_numpy_over_batches():
    rng = np.random.default_rng(3)
    x = rng.normal(loc=1000.0, scale=0.5, size=(103, 7))  # a large offset tests the shifted sums
    acc = GaussianStats(7)
    for part in np.array_split(x, [1, 40, 41, 90]):
        acc.update(part)
    assert acc.n == 103
    np.testing.assert_allclose(acc.mu, x.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(acc.sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


# --- pytorch-fid parity ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    a, b = smooth_images(5, seed=0), np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    write_pngs(root / "a", a)
    write_pngs(root / "b", b)
    np.savez(root / "b.npz", images=b)
    return root


@pytest.fixture
def pytorch_fid_with(monkeypatch, weights):
    """pytorch-fid loading our weights file instead of downloading."""
    import pytorch_fid.inception as pfi

    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kw: torch.load(weights))


def test_lossless_fid_equals_pytorch_fid(two_folders, weights, pytorch_fid_with):
    # dims=64 keeps the 64x64 matrix square root instant; the 2048-d statistics are compared below
    from pytorch_fid.fid_score import calculate_fid_given_paths

    theirs = calculate_fid_given_paths(
        [str(two_folders / "a"), str(two_folders / "b")], batch_size=4, device="cpu", dims=64, num_workers=0
    )
    inception = InceptionFeatures(weights, "cpu", dims=64)
    sa = fid_stats(folder_source(two_folders / "a"), inception, protocol="lossless", batch_size=5)
    sb = fid_stats(npz_source(two_folders / "b.npz"), inception, protocol="lossless", batch_size=3)
    ours = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    assert theirs > 1.0
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_pool3_statistics_equal_pytorch_fid(two_folders, weights, pytorch_fid_with):
    from pytorch_fid.fid_score import compute_statistics_of_path
    from pytorch_fid.inception import InceptionV3

    mu, sigma = compute_statistics_of_path(
        str(two_folders / "a"), InceptionV3([3]), batch_size=3, dims=2048, device="cpu", num_workers=0
    )
    inception = InceptionFeatures(weights, "cpu")
    ours = fid_stats(folder_source(two_folders / "a"), inception, protocol="lossless", batch_size=4)
    assert ours.n == 5 and ours.meta["image_size"] == [32, 32] and ours.meta["dims"] == 2048
    assert ours.meta["inception_weights_sha256"] == inception.sha256
    assert np.abs(mu).max() > 0.01 and np.abs(sigma).max() > 1e-4  # the random network gives real features
    np.testing.assert_allclose(ours.mu, mu, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.sigma, sigma, rtol=0, atol=1e-5)


def test_frechet_distance_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(9)
    for n in (10, 200):  # singular and full-rank covariances in 32 dimensions
        x, y = rng.normal(size=(n, 32)), rng.normal(size=(n, 32)) * 1.5 + 0.3
        args = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
        assert frechet_distance(*args) == pytest.approx(calculate_frechet_distance(*args), abs=1e-6)


def test_inception_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(WaveDiffError, match=r"not found.*github\.com/mseitzer/pytorch-fid/releases.*--inception-"):
        InceptionFeatures(tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(WaveDiffError, match="not the FID Inception state dict"):
        InceptionFeatures(other)

    def no_network(url, dst, *a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WaveDiffError, match=r"torch hub cache .*download failed.*--inception-weights"):
        InceptionFeatures(None)


# --- the paper's JPEG protocol ---------------------------------------------------------------------------------


def test_jpeg_roundtrip_matches_torchvision_save_image(tmp_path):
    import torchvision

    from wavediff.sampling import to_uint8

    x = torch.rand(3, 3, 32, 32) * 2 - 1  # generated images in [-1, 1]
    ours = jpeg_roundtrip(to_uint8(x))
    for i in range(3):  # what the authors' test_wddgan.py did: save_image((x + 1) / 2, "i.jpg")
        torchvision.utils.save_image((x[i] + 1) / 2, tmp_path / f"{i}.jpg")
        theirs = np.asarray(Image.open(tmp_path / f"{i}.jpg").convert("RGB"))
        np.testing.assert_array_equal(ours[i], theirs)


def test_paper_protocol_round_trips_every_batch():
    images = smooth_images(5, seed=4)
    source = ImageSource("test", "npz", 5, lambda b: (images[i : i + b] for i in range(0, 5, b)))
    lossless = np.concatenate(list(iter_images(source, protocol="lossless", batch_size=2)))
    paper = np.concatenate(list(iter_images(source, protocol="paper", batch_size=2)))
    np.testing.assert_array_equal(lossless, images)
    np.testing.assert_array_equal(paper, jpeg_roundtrip(images))
    assert not np.array_equal(paper, images)


def test_iter_images_rejects_mixed_sizes():
    batches = [np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8)]
    source = ImageSource("gen", "checkpoint", 4, lambda b: iter(batches))
    with pytest.raises(DataError, match="mixed sizes"):
        list(iter_images(source, protocol="lossless", batch_size=2))


# --- statistics files ------------------------------------------------------------------------------------------


def test_stats_npz_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    stats = FIDStats(rng.normal(size=6), np.eye(6) * 2, 42, {"protocol": "paper", "dataset": "cifar10"})
    save_stats(tmp_path / "ref.npz", stats)
    back = load_stats(tmp_path / "ref.npz")
    np.testing.assert_array_equal(back.mu, stats.mu)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    assert back.n == 42 and back.meta == stats.meta
    np.savez(tmp_path / "pytorch_fid.npz", mu=stats.mu, sigma=stats.sigma)  # pytorch-fid's own format
    assert load_stats(tmp_path / "pytorch_fid.npz").n is None


def test_authors_npy_loads_without_unpickling_arbitrary_objects(tmp_path):
    rng = np.random.default_rng(6)
    mu, sigma = rng.normal(size=5), np.cov(rng.normal(size=(20, 5)), rowvar=False)
    with open(tmp_path / "cifar10_train_stat.npy", "wb") as f:  # as the authors' compute_dataset_stat.py saves
        np.save(f, {"mu": mu, "sigma": sigma}, allow_pickle=True)
    stats = load_stats(tmp_path / "cifar10_train_stat.npy")
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())


def test_npy_needing_more_than_arrays_is_refused(tmp_path):
    path = tmp_path / "stat.npy"
    with open(path, "wb") as f:
        np.save(f, {"mu": np.zeros(3), "sigma": np.eye(3), "extra": _Sneaky()}, allow_pickle=True)
    with pytest.raises(DataError, match=r"needs trust.*posix\.getcwd.*allow_pickle=True.*np\.savez") as e:
        load_stats(path)
    assert "\n" not in str(e.value)


# --- precision / recall ----------------------------------------------------------------------------------------


def brute_force_pr(real: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def inside(probes, manifold):
        radii = np.sort(dist(manifold, manifold), axis=1)[:, k]  # k-th neighbour, the point itself excluded
        return float(np.mean((dist(probes, manifold) <= radii[None, :]).any(axis=1)))

    return inside(gen, real), inside(real, gen)


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(120, 8))
    gen = np.concatenate([rng.normal(size=(60, 8)) * 0.6, rng.normal(loc=2.5, size=(40, 8))])  # half-collapsed
    expected = brute_force_pr(real, gen)
    got = precision_recall(torch.from_numpy(real).float(), torch.from_numpy(gen).float(), row_batch=17)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    radii = manifold_radii(torch.from_numpy(real).float(), 3, row_batch=50).double().numpy()
    expected_radii = np.sort(np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1)), axis=1)[:, 3]
    np.testing.assert_allclose(radii, expected_radii, rtol=1e-5)


def test_precision_recall_identical_sets_are_perfect():
    x = torch.randn(30, 5)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


class TinyVGG(torch.nn.Module):
    """Same call signature as NVIDIA's vgg16.pt: uint8 NCHW in, features out with return_features=True."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4 * 4, 16)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8
        f = self.proj(torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1))
        return f if return_features else f.sum(1)


def save_tiny_vgg(path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format of NVIDIA's vgg16.pt
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(TinyVGG()).save(str(path))


def test_vgg16_features_call_convention(tmp_path):
    save_tiny_vgg(tmp_path / "vgg16.pt")
    vgg = VGG16Features(tmp_path / "vgg16.pt", "cpu")
    images = smooth_images(3, seed=8, size=16)
    feats = vgg(images)
    assert feats.shape == (3, 16) and feats.dtype == torch.float32
    reference = TinyVGG()
    reference.load_state_dict(vgg.model.state_dict())
    expected = reference(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), return_features=True)
    torch.testing.assert_close(feats, expected.detach())
    with pytest.raises(WaveDiffError, match=r"not found.*api\.ngc\.nvidia\.com.*vgg16\.pt.*--vgg16"):
        VGG16Features(tmp_path / "nope.pt")
