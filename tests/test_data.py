"""Data pipeline: every dataset kind on tiny files written here (never downloads),
error messages, picklability with spawned workers, and the resumable order."""

from __future__ import annotations

import io
import logging
import pickle

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from wavediff.config import DataConfig
from wavediff.data import (
    build_dataloader,
    build_dataset,
    iter_image_folder_uint8,
    lmdb_datasets,
    load_digits_arrays,
    load_image_folder_uint8,
    torchvision_sets,
)
from wavediff.errors import ConfigError, DataError


def _pixels(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _expected(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 127.5 - 1


def _encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _write_lmdb(path, items: dict[bytes, bytes], subdir: bool = True) -> None:
    env = lmdb.open(str(path), subdir=subdir, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in items.items():
            txn.put(k, v)
    env.close()


def _cfg(dataset: str, path="", size=16, hflip=False, max_images=0) -> DataConfig:
    return DataConfig(dataset=dataset, path=str(path), image_size=size, hflip=hflip, max_images=max_images)


REAL_FETCH = torchvision_sets.fetch_archive  # for the one test that downloads, from a local socket


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(torchvision_sets, "fetch_archive", refuse)


# --- CIFAR-10 / STL-10 ----------------------------------------------------------


def _write_cifar(root, per_batch: int = 2) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = _pixels(5 * per_batch, 32, 32)
    for b in range(5):
        rows = images[b * per_batch : (b + 1) * per_batch].transpose(0, 3, 1, 2).reshape(per_batch, -1)
        key = b"data" if b == 0 else "data"  # py2-era pickles load with either key type
        with open(folder / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump({key: rows, "labels": [0] * per_batch}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    return images


def test_cifar10_reads_tiny_pickles_without_md5_or_download(tmp_path):
    images = _write_cifar(tmp_path)
    ds = build_dataset(_cfg("cifar10", tmp_path, size=32))
    assert len(ds) == 10
    torch.testing.assert_close(ds[7], _expected(images[7]))
    assert len(build_dataset(_cfg("cifar10", tmp_path, size=32, max_images=3))) == 3


def test_cifar10_missing_files_and_failed_download(tmp_path):
    with pytest.raises(DataError, match="could not download CIFAR-10.*extract it"):
        build_dataset(_cfg("cifar10", tmp_path / "nothing", size=32))
    with pytest.raises(DataError, match="--data"):
        build_dataset(_cfg("cifar10", "", size=32))
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3.*unreadable"):
        build_dataset(_cfg("cifar10", tmp_path, size=32))


def test_stl10_unlabeled_binary_layout_and_resize(tmp_path):
    images = _pixels(3, 96, 96)
    (tmp_path / "stl10_binary").mkdir()
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(images.transpose(0, 3, 2, 1).tobytes())
    torch.testing.assert_close(build_dataset(_cfg("stl10", tmp_path, size=96))[2], _expected(images[2]))
    ds = build_dataset(_cfg("stl10", tmp_path, size=64))
    assert len(ds) == 3 and ds[0].shape == (3, 64, 64)
    assert pickle.loads(pickle.dumps(ds))[1].shape == (3, 64, 64)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(b"x" * 100)
    with pytest.raises(DataError, match="not a whole number"):
        build_dataset(_cfg("stl10", tmp_path, size=64))


# --- LMDB datasets ----------------------------------------------------------------


def test_lsun_lmdb_with_webp_and_jpeg_values(tmp_path):
    images = _pixels(4, 24, 40)
    keys = [bytes(f"{i:040x}", "ascii") for i in (3, 1, 2, 0)]
    values = [_encode(img, fmt) for img, fmt in zip(images, ["WEBP", "JPEG", "WEBP", "PNG"], strict=True)]
    _write_lmdb(tmp_path / "church_outdoor_train_lmdb", dict(zip(keys, values, strict=True)))
    ds = build_dataset(_cfg("lsun", tmp_path, size=16))
    assert len(ds) == 4 and ds[1].shape == (3, 16, 16)
    assert -1 <= ds[1].min() and ds[1].max() <= 1
    # key order as torchvision's LSUN: byte order; the PNG holds key 0 -> index 0
    exact = build_dataset(_cfg("lsun", tmp_path / "church_outdoor_train_lmdb", size=24))
    crop = images[3][:, 8:32]
    torch.testing.assert_close(exact[0], _expected(np.ascontiguousarray(crop)))
    assert len(build_dataset(_cfg("lsun", tmp_path, size=16, max_images=2))) == 2


def test_celeba_256_nvae_raw_lmdb(tmp_path):
    images = _pixels(12, 16, 16)
    _write_lmdb(tmp_path / "train.lmdb", {str(i).encode(): img.tobytes() for i, img in enumerate(images)})
    ds = build_dataset(_cfg("celeba_256", tmp_path, size=16))
    assert len(ds) == 12
    torch.testing.assert_close(ds[10], _expected(images[10]))  # numeric, not byte, key order
    assert build_dataset(_cfg("celeba_256", tmp_path, size=8))[0].shape == (3, 8, 8)


def test_celeba_512_toolbox_lmdb_with_pyarrow_wrapper(tmp_path):
    images = _pixels(11, 16, 16)
    fake_header = b"\x00\x00\x00\x00\xff\xff\xff\xffpyarrow-ish-header\x10\x00"
    items = {str(i).encode(): fake_header + _encode(img, "PNG") + b"\x07\x00label" for i, img in enumerate(images)}
    jpeg = _encode(images[1], "JPEG")
    items[b"1"] = fake_header + jpeg + b"tail"
    items[b"__len__"] = b"serialised-int"
    items[b"__keys__"] = b"serialised-list"
    _write_lmdb(tmp_path / "celeba_512.lmdb", items, subdir=False)
    for path in (tmp_path, tmp_path / "celeba_512.lmdb"):
        ds = build_dataset(_cfg("celeba_512", path, size=16))
        assert len(ds) == 11
        torch.testing.assert_close(ds[10], _expected(images[10]))
        torch.testing.assert_close(ds[1], _expected(np.asarray(Image.open(io.BytesIO(jpeg)))))
    with pytest.raises(DataError, match="celeba_1024.lmdb"):
        build_dataset(_cfg("celeba_1024", tmp_path / "celeba_512.lmdb.missing", size=16))
    (tmp_path / "plain_dir").mkdir()
    expected = "no LMDB database.*point the data path to the torch-toolbox LMDB file 'celeba_1024.lmdb'"
    with pytest.raises(DataError, match=expected):
        build_dataset(_cfg("celeba_1024", tmp_path / "plain_dir", size=16))


def test_lmdb_bad_values_and_paths(tmp_path):
    _write_lmdb(tmp_path / "train.lmdb", {b"0": b"not an image of any size"})
    with pytest.raises(DataError, match=r"entry b'0' is not a readable image"):
        build_dataset(_cfg("celeba_256", tmp_path))[0]
    with pytest.raises(DataError, match="does not exist.*--data"):
        build_dataset(_cfg("lsun", tmp_path / "missing"))
    with pytest.raises(DataError, match="needs a data path"):
        build_dataset(_cfg("celeba_256", ""))
    with pytest.raises(DataError, match="church_outdoor_train_lmdb"):
        build_dataset(_cfg("lsun", tmp_path))  # a folder without the LMDB
    _write_lmdb(tmp_path / "empty", {})
    with pytest.raises(DataError, match="holds no images"):
        build_dataset(_cfg("celeba_256", tmp_path / "empty"))
    _write_lmdb(tmp_path / "lsun_like", {bytes(f"{i:040x}", "ascii"): b"x" for i in (10, 11)})
    with pytest.raises(DataError, match="holds 2 entries but none under the numeric keys.*LSUN"):
        build_dataset(_cfg("celeba_256", tmp_path / "lsun_like"))
    (tmp_path / "celeba_1024.lmdb").write_bytes(b"not an lmdb file" * 512)
    with pytest.raises(DataError, match="not a readable LMDB database"):
        build_dataset(_cfg("celeba_1024", tmp_path))


@pytest.mark.slow  # starting spawned workers costs a few seconds
def test_lmdb_dataset_pickles_and_works_in_spawned_workers(tmp_path):
    images = _pixels(8, 16, 16)
    _write_lmdb(tmp_path / "train.lmdb", {str(i).encode(): img.tobytes() for i, img in enumerate(images)})
    ds = build_dataset(_cfg("celeba_256", tmp_path))
    assert (tmp_path / "train.lmdb").resolve() not in lmdb_datasets._OPEN  # closed again after listing keys
    ds[0]  # opens this process's handle, which the pickled copy and a second dataset share
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[5], _expected(images[5]))
    assert len(build_dataset(_cfg("celeba_256", tmp_path))) == 8
    loader = build_dataloader(ds, 4, shuffle=False, num_workers=2, seed=0, multiprocessing_context="spawn")
    batches = list(loader)
    torch.testing.assert_close(torch.cat(batches), torch.stack([_expected(i) for i in images]))


# --- image folders ------------------------------------------------------------------


def _make_folder(root) -> None:
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8), "L").save(root / "a_grey.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8), "RGBA").save(root / "b_rgba.png")
    Image.fromarray(rng.integers(0, 256, (24, 36, 3), dtype=np.uint8)).convert("P").save(root / "sub/c_pal.gif")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "sub/d.JPG")
    (root / "notes.txt").write_text("not an image")


def test_folder_modes_recursion_and_skipped_corrupt(tmp_path, caplog):
    _make_folder(tmp_path)
    (tmp_path / "e_corrupt.jpg").write_bytes(b"<html>not a jpeg</html>")
    with caplog.at_level(logging.WARNING, logger="wavediff.data.folder"):
        ds = build_dataset(_cfg("folder", tmp_path, size=16))
    assert [f.name for f in ds.files] == ["a_grey.png", "b_rgba.png", "c_pal.gif", "d.JPG"]
    assert ds.skipped == 1 and "skipped 1 unreadable" in caplog.text and "e_corrupt.jpg" in caplog.text
    for i in range(len(ds)):
        assert ds[i].shape == (3, 16, 16) and ds[i].dtype == torch.float32
        assert ds[i].min() >= -1 and ds[i].max() <= 1
    grey = ds[0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert len(build_dataset(_cfg("folder", tmp_path, size=16, max_images=2))) == 2


def test_folder_truncated_file_falls_back_to_next_image(tmp_path, caplog):
    rng = np.random.default_rng(2)
    good = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(good).save(tmp_path / "b.png")
    data = _encode(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "PNG")
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    ds = build_dataset(_cfg("folder", tmp_path, size=16))
    assert len(ds) == 2
    with caplog.at_level(logging.WARNING, logger="wavediff.data.folder"):
        torch.testing.assert_close(ds[0], _expected(good))
    assert "cannot decode" in caplog.text and "a.png" in caplog.text


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(_cfg("folder", tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        build_dataset(_cfg("folder", tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 image files.*x.png"):
        build_dataset(_cfg("folder", tmp_path / "bad"))
    (tmp_path / "small").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "small" / "a.png")
    Image.new("RGB", (64, 20)).save(tmp_path / "small" / "b.png")
    with pytest.raises(DataError, match=r"b.png' is 64x20, smaller than the 32px.*smaller image size"):
        build_dataset(_cfg("folder", tmp_path / "small", size=32))
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'.*cifar10.*folder.*digits"):
        build_dataset(_cfg("imagenet", tmp_path))


def test_resize_shorter_side_then_center_crop(tmp_path):
    img = np.zeros((20, 60, 3), dtype=np.uint8)
    img[:, 20:40] = 255  # the middle third is white: exactly the centre crop after resizing to 20
    Image.fromarray(img).save(tmp_path / "wide.png")
    x = build_dataset(_cfg("folder", tmp_path, size=20))[0]
    assert x.shape == (3, 20, 20) and x[:, :, 2:-2].min() == 1


def test_hflip_is_random_and_seeded():
    ds = build_dataset(_cfg("digits", size=16, hflip=True))
    plain = build_dataset(_cfg("digits", size=16))[3]
    torch.manual_seed(0)
    first = [ds[3] for _ in range(16)]
    torch.manual_seed(0)
    again = [ds[3] for _ in range(16)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    flipped = [torch.equal(x, plain.flip(-1)) for x in first]
    assert any(flipped) and not all(flipped)
    assert all(f or torch.equal(x, plain) for f, x in zip(flipped, first, strict=True))


# --- digits and raw folder reading ----------------------------------------------------


def test_digits_arrays_and_dataset():
    images, labels = load_digits_arrays(32)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int64 and set(labels) == set(range(10))
    assert images[..., 0].mean() < 80 and images.max() > 200  # white digits on black
    ds = build_dataset(_cfg("digits", size=32, max_images=100))
    assert len(ds) == 100 and ds[0].shape == (3, 32, 32)
    torch.testing.assert_close(ds[0], _expected(images[0]))


def test_load_image_folder_uint8(tmp_path):
    imgs = _pixels(3, 12, 10)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    Image.fromarray(imgs[0][..., 0], "L").save(tmp_path / "3_grey.png")
    out = load_image_folder_uint8(tmp_path)
    assert out.shape == (4, 12, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:3], imgs)
    assert [b.shape[0] for b in iter_image_folder_uint8(tmp_path, batch_size=3)] == [3, 1]
    assert load_image_folder_uint8(tmp_path, max_images=2).shape[0] == 2
    Image.new("RGB", (8, 8)).save(tmp_path / "9_other.png")
    with pytest.raises(DataError, match="differ in size.*12.*8x8"):
        load_image_folder_uint8(tmp_path)
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_image_folder_uint8(tmp_path / "e")


# --- loader ------------------------------------------------------------------------


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _epoch(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [b.tolist() for b in loader]


def test_order_depends_on_seed_and_epoch_and_resumes_mid_epoch():
    ds = _Indices(40)
    run = build_dataloader(ds, 4, num_workers=0, seed=7)
    epochs = [_epoch(run, e) for e in range(3)]
    assert epochs[0] != epochs[1] and sorted(sum(epochs[0], [])) == list(range(40))
    assert _epoch(build_dataloader(ds, 4, num_workers=0, seed=7), 2) == epochs[2]
    assert _epoch(build_dataloader(ds, 4, num_workers=0, seed=8), 0) != epochs[0]
    resumed = build_dataloader(ds, 4, num_workers=0, seed=7, start_epoch=1, start_batch=3)
    assert len(resumed) == 7
    assert [b.tolist() for b in resumed] == epochs[1][3:]  # works before any set_epoch call
    assert _epoch(resumed, 1) == epochs[1][3:]
    assert _epoch(resumed, 2) == epochs[2] and len(resumed) == 10


def test_distributed_shards_are_disjoint_and_resumable():
    ds = _Indices(30)
    shards = [_epoch(build_dataloader(ds, 5, num_workers=0, seed=1, rank=r, world_size=2), 4) for r in range(2)]
    flat = [sum(s, []) for s in shards]
    assert len(flat[0]) == len(flat[1]) == 15 and not set(flat[0]) & set(flat[1])
    resumed = build_dataloader(ds, 5, num_workers=0, seed=1, rank=1, world_size=2, start_epoch=4, start_batch=1)
    assert _epoch(resumed, 4) == shards[1][1:]
    with pytest.raises(DataError, match="fewer than the batch size 64"):
        build_dataloader(ds, 64, num_workers=0, seed=1)


def test_a_stalled_download_stops_with_one_line(tmp_path, monkeypatch, capsys):
    """A server that accepts the connection and never answers (a stuck proxy): the download gives up after
    runtime.NETWORK_TIMEOUT_S without data instead of hanging for ever, and says what it was fetching."""
    import dataclasses
    import socket
    import time

    from wavediff import runtime

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(
        torchvision_sets, "CIFAR10_ARCHIVE", dataclasses.replace(torchvision_sets.CIFAR10_ARCHIVE, url=url)
    )
    monkeypatch.setattr(runtime, "NETWORK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(torchvision_sets, "fetch_archive", REAL_FETCH)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    try:
        with pytest.raises(DataError, match="could not download CIFAR-10.*timed out"):
            build_dataset(_cfg("cifar10", tmp_path / "cifar", size=32))
    finally:
        silent.close()
    assert time.monotonic() - start < 30
    assert f"downloading CIFAR-10 from {url}" in capsys.readouterr().out
    assert socket.getdefaulttimeout() is None  # restored
