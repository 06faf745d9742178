"""Image folders beyond 8-bit RGB files: 16-bit, 32-bit int and float greyscale scaled (not clipped)
to 8 bits, transparency still composited over white, folder symlinks followed without looping,
hidden files and folders skipped, and error messages that name no command-line flag."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from wavediff.config import DataConfig
from wavediff.data import build_dataset, list_images, load_image_folder_uint8
from wavediff.data.transforms import to_rgb
from wavediff.errors import DataError


def _cfg(path, size: int = 16) -> DataConfig:
    return DataConfig(dataset="folder", path=str(path), image_size=size, hflip=False)


def _grey(rgb: Image.Image) -> np.ndarray:
    """The single grey channel of an RGB image whose three channels must be equal."""
    pixels = np.asarray(rgb)
    assert rgb.mode == "RGB" and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 1])
    np.testing.assert_array_equal(pixels[..., 1], pixels[..., 2])
    return pixels[..., 0]


def _gradient16() -> np.ndarray:
    """A 2-D uint16 gradient over 0..65535 (step 3) with the extremes and the rounding edges
    (128 -> 0 but 129 -> 1, 385 -> 1 but 386 -> 2), padded with 65535 to 64 columns."""
    values = np.union1d(np.arange(0, 65536, 3), [128, 129, 385, 386, 65534, 65535])
    values = np.pad(values, (0, -len(values) % 64), constant_values=65535)
    return values.astype(np.uint16).reshape(-1, 64)


def _saved(img: Image.Image, path, **kw) -> Image.Image:
    img.save(path, **kw)
    reopened = Image.open(path)
    reopened.load()
    return reopened


# --- bit depths and modes --------------------------------------------------------------------


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = _gradient16()
    img = _saved(Image.fromarray(values), tmp_path / "g16.png")
    assert img.mode == "I;16"
    expected = np.round(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(_grey(to_rgb(img)), expected)
    # The same picture saved at 8 bits reads the same (within rounding), not almost white.
    eight = _saved(Image.fromarray(expected, "L"), tmp_path / "g8.png")
    assert abs(float(_grey(to_rgb(img)).mean()) - float(_grey(to_rgb(eight)).mean())) < 0.5


@pytest.mark.parametrize("mode, dtype", [("I;16B", ">u2"), ("I;16L", "<u2")])
def test_16bit_byte_orders(mode, dtype):
    values = _gradient16()
    img = Image.frombytes(mode, values.shape[::-1], values.astype(dtype).tobytes())
    np.testing.assert_array_equal(_grey(to_rgb(img)), np.round(values / 257).astype(np.uint8))


def test_32bit_int_image_holding_16bit_values(tmp_path):
    values = _gradient16().astype(np.int32)
    img = _saved(Image.fromarray(values), tmp_path / "i32.tif")
    assert img.mode == "I"
    np.testing.assert_array_equal(_grey(to_rgb(img)), np.round(values / 257).astype(np.uint8))


def test_32bit_int_image_beyond_16bit_uses_the_int32_range():
    values = np.array([[-5, 0, 2**30, 2**31 - 1]], dtype=np.int32)
    got = _grey(to_rgb(Image.fromarray(values)))
    np.testing.assert_array_equal(got, [[0, 0, 128, 255]])


def test_float_tiff_in_unit_range(tmp_path):
    values = np.linspace(0.0, 1.0, 256 * 4, dtype=np.float32).reshape(4, 256)
    img = _saved(Image.fromarray(values), tmp_path / "f.tif")
    assert img.mode == "F"
    np.testing.assert_array_equal(_grey(to_rgb(img)), np.round(values.astype(np.float64) * 255).astype(np.uint8))


def test_float_image_on_the_8bit_scale_is_rounded_and_clipped(tmp_path):
    values = np.array([[-3.0, 0.4, 1.6, 127.5, 200.2, 254.6, 300.0, np.nan]], dtype=np.float32)
    img = _saved(Image.fromarray(values), tmp_path / "f255.tif")
    np.testing.assert_array_equal(_grey(to_rgb(img)), [[0, 0, 2, 128, 200, 255, 255, 0]])


def test_16bit_grey_png_with_transparent_value_is_white_there(tmp_path):
    values = _gradient16()
    key = int(values[10, 10])
    img = _saved(Image.fromarray(values), tmp_path / "trns.png", transparency=key)
    assert img.mode == "I;16" and img.info["transparency"] == key
    expected = np.round(values / 257).astype(np.uint8)
    expected[values == key] = 255
    np.testing.assert_array_equal(_grey(to_rgb(img)), expected)


def test_16bit_rgb_png_still_reads_as_8bit(tmp_path):
    # PIL has no 16-bit RGB mode: it opens such a PNG as 8-bit RGB. Write one by hand (PIL cannot).
    import struct
    import zlib

    rgb16 = (np.arange(8 * 8 * 3, dtype=np.uint32).reshape(8, 8, 3) * 300).astype(">u2")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    (tmp_path / "rgb16.png").write_bytes(png)
    img = Image.open(tmp_path / "rgb16.png")
    out = np.asarray(to_rgb(img))
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out, (rgb16.astype(np.uint32) >> 8).astype(np.uint8))


def test_8bit_modes_with_alpha_or_palette_convert_as_before():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    alpha = np.where(rng.random((6, 6)) < 0.5, 0, 255).astype(np.uint8)
    la = Image.merge("LA", (Image.fromarray(grey, "L"), Image.fromarray(alpha, "L")))
    np.testing.assert_array_equal(_grey(to_rgb(la)), np.where(alpha == 0, 255, grey))

    palette = Image.fromarray(rng.integers(0, 4, (6, 6), dtype=np.uint8), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    plain = np.asarray(to_rgb(palette))
    np.testing.assert_array_equal(plain, np.asarray(palette.convert("RGB")))
    palette.info["transparency"] = 1  # palette index 1 (red) is transparent: white over the canvas
    keyed = np.asarray(to_rgb(palette))
    red = np.asarray(palette) == 1
    assert red.any() and (keyed[red] == 255).all() and (keyed[~red] == plain[~red]).all()

    pa = palette.convert("PA")
    assert pa.mode == "PA"
    np.testing.assert_array_equal(np.asarray(to_rgb(pa)), keyed)


def test_16bit_folder_reads_the_same_as_its_8bit_copy(tmp_path):
    values = _gradient16()[:, :64]
    (tmp_path / "deep").mkdir()
    (tmp_path / "flat").mkdir()
    Image.fromarray(values).save(tmp_path / "deep" / "a.png")
    Image.fromarray(np.round(values / 257).astype(np.uint8), "L").save(tmp_path / "flat" / "a.png")
    np.testing.assert_array_equal(
        load_image_folder_uint8(tmp_path / "deep"), load_image_folder_uint8(tmp_path / "flat")
    )
    deep, flat = (build_dataset(_cfg(tmp_path / d, size=32))[0] for d in ("deep", "flat"))
    assert np.array_equal(deep.numpy(), flat.numpy())


# --- folder walking --------------------------------------------------------------------------


def _png(path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def _names(root) -> list[str]:
    return [p.relative_to(root).as_posix() for p in list_images(root)]


def test_symlinked_subfolder_is_read(tmp_path):
    _png(tmp_path / "elsewhere" / "x.png")
    _png(tmp_path / "elsewhere" / "deeper" / "y.png")
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "linked")
    # the only content of `data` is the link: before, "no image files"
    assert _names(tmp_path / "data") == ["linked/deeper/y.png", "linked/x.png"]
    _png(tmp_path / "data" / "a.png")
    _png(tmp_path / "data" / "z" / "b.png")
    assert _names(tmp_path / "data") == ["a.png", "linked/deeper/y.png", "linked/x.png", "z/b.png"]
    assert len(build_dataset(_cfg(tmp_path / "data", size=8))) == 4


def test_symlinked_root_and_file_links(tmp_path):
    _png(tmp_path / "real" / "a.png")
    os.symlink(tmp_path / "real", tmp_path / "root_link")
    os.symlink(tmp_path / "real" / "a.png", tmp_path / "real" / "b.png")
    os.symlink(tmp_path / "real" / "missing.png", tmp_path / "real" / "c.png")  # broken: skipped
    assert _names(tmp_path / "root_link") == ["a.png", "b.png"]


def test_symlink_cycle_terminates(tmp_path):
    _png(tmp_path / "data" / "a.png")
    _png(tmp_path / "data" / "sub" / "b.png")
    os.symlink(tmp_path / "data", tmp_path / "data" / "sub" / "up")  # data/sub/up -> data
    os.symlink("..", tmp_path / "data" / "sub" / "parent")  # relative: the same cycle
    os.symlink(tmp_path / "data" / "sub", tmp_path / "data" / "sub" / "self")
    assert _names(tmp_path / "data") == ["a.png", "sub/b.png"]


def test_two_links_to_one_folder_give_no_duplicates(tmp_path):
    _png(tmp_path / "shared" / "x.png")
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "shared", tmp_path / "data" / "b_link")
    os.symlink(tmp_path / "shared", tmp_path / "data" / "a_link")
    assert _names(tmp_path / "data") == ["a_link/x.png"]  # sorted first, so the same on every run


def test_hidden_files_and_folders_are_skipped(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "sub" / "b.png")
    _png(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.png")
    _png(tmp_path / "sub" / ".git" / "c.png")
    _png(tmp_path / ".hidden.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    assert _names(tmp_path) == ["a.png", "sub/b.png"]
    assert load_image_folder_uint8(tmp_path).shape == (2, 8, 8, 3)  # the "._" file would not decode
    (tmp_path / "only_hidden").mkdir()
    _png(tmp_path / "only_hidden" / ".x" / "d.png")
    with pytest.raises(DataError, match="no image files.*skipping hidden"):
        list_images(tmp_path / "only_hidden")


def test_order_is_sorted_by_relative_path(tmp_path):
    for name in ["b/2.png", "a.png", "b/10.png", "B.png", "c/a/z.png", "b.png"]:
        _png(tmp_path / name)
    assert _names(tmp_path) == sorted(["b/2.png", "a.png", "b/10.png", "B.png", "c/a/z.png", "b.png"])


def test_unreadable_subfolder_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    _png(tmp_path / "a.png")
    _png(tmp_path / "locked" / "b.png")
    real_scandir = os.scandir

    def scandir(path):  # a folder without read permission (chmod would not stop root, who runs CI)
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert _names(tmp_path) == ["a.png"]
    assert "skipped unreadable folder" in caplog.text and "locked" in caplog.text
    with pytest.raises(DataError, match="cannot read folder '.*locked' \\(Permission denied\\); check its permissions"):
        list_images(tmp_path / "locked")


# --- messages --------------------------------------------------------------------------------


def test_folder_messages_name_the_path_and_no_flag(tmp_path):
    (tmp_path / "empty").mkdir()
    _png(tmp_path / "file.png")
    cases = {
        tmp_path / "empty": "no image files in '.*empty'.*point it at a folder of images",
        tmp_path / "file.png": "'.*file.png' is not a folder; point it at a folder of images",
        tmp_path / "missing": "'.*missing' does not exist; point it at a folder of images",
        "": "no image folder given",
    }
    for path, pattern in cases.items():
        with pytest.raises(DataError, match=pattern) as caught:
            list_images(path)
        assert "--" not in str(caught.value) and "\n" not in str(caught.value)


def test_dataset_messages_name_no_flag(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 image files.*x.png.*replace or remove") as caught:
        build_dataset(_cfg(tmp_path / "bad"))
    assert "--data" not in str(caught.value)
    _png(tmp_path / "small" / "a.png")
    with pytest.raises(DataError, match="8x8, smaller than the 16px.*use a folder") as caught:
        build_dataset(_cfg(tmp_path / "small", size=16))
    assert "--data" not in str(caught.value)
    # An unset data.path still says which setting is missing (only training leaves it empty).
    with pytest.raises(DataError, match="needs a data path"):
        build_dataset(_cfg(""))
