"""`wavediff serve` in a real browser: headless Chromium (Debian's package) driven through Playwright.

Starts the command in a subprocess on a free localhost port, makes a grid, an interpolation and a
trajectory through the page, and checks the images against `wavediff sample --seeds s --precision fp32`.
"""

import base64
import io
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from wavediff.checkpoints.convert import convert_official_checkpoint
from wavediff.cli import main

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine: apt-get install chromium (.ci/run does it)"
)


def decode(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def reference(checkpoint, tmp_path, seed: int) -> np.ndarray:
    out = tmp_path / f"ref{seed}.npz"
    assert main(["sample", str(checkpoint), "--seeds", str(seed), "--precision", "fp32", "--out", str(out)]) == 0
    return np.load(out)["images"][0]


@pytest.fixture
def served(tmp_path):
    """`wavediff serve CKPT --port 0` in a subprocess; yields (url, checkpoint, process)."""
    ckpt = tmp_path / "tiny.safetensors"
    convert_official_checkpoint(
        FIXTURES / "tiny_wavelet_netG.pth", ckpt, official_args=FIXTURES / "tiny_wavelet_config.json"
    )
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wavediff",
            "serve",
            str(ckpt),
            "--port",
            "0",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=120)
        url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
        yield url, ckpt, proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_page_in_chromium_shows_grid_interpolation_variations_and_trajectory(served, tmp_path):
    url, ckpt, proc = served
    start = time.perf_counter()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "?seeds=0-5&seed=4&a=1&b=3&n=5&vseed=2&others=5,2&vary=noise&traj=2")
        for section in ("samples", "interp", "vari", "traj"):
            page.wait_for_selector(f'#{section}[data-status="ok"]', timeout=60_000)

        def images(selector):
            return page.eval_on_selector_all(
                selector, "els => els.map(e => [e.dataset.name, e.naturalWidth, e.naturalHeight, e.src])"
            )

        # the grid: six 32x32 tiles in seed order; the large view shows seed 4 as `wavediff sample --seeds 4`
        grid = images("#grid img")
        assert [(g[0], g[1], g[2]) for g in grid] == [(f"seed{s}", 32, 32) for s in range(6)]
        assert all(decode(g[3]).shape == (32, 32, 3) for g in grid)
        ref4 = reference(ckpt, tmp_path, 4)
        (large,) = images("#large img")
        assert large[1:3] == [32, 32] and np.array_equal(decode(large[3]), ref4)
        assert np.abs(decode(grid[4][3]).astype(int) - ref4).max() <= 1  # batch of 6: same up to rounding
        assert page.inner_text("#large figcaption") == "seed 4"

        # interpolation: five frames from seed 1 to seed 3
        strip = images("#strip img")
        assert [s[1:3] for s in strip] == [[32, 32]] * 5
        frames = [decode(s[3]) for s in strip]
        ref1, ref3 = reference(ckpt, tmp_path, 1), reference(ckpt, tmp_path, 3)
        assert np.abs(frames[0].astype(int) - ref1).max() <= 1 and np.abs(frames[-1].astype(int) - ref3).max() <= 1
        assert np.abs(frames[2].astype(int) - ref1).mean() > 10 and np.abs(frames[2].astype(int) - ref3).mean() > 10

        # latent variations: seed 2's start with the posterior noise of 5, then of 2 (its own image again)
        assert page.input_value("#vary") == "noise"
        tiles = images("#variations img")
        assert [t[0] for t in tiles] == ["var0", "var1", "var2"] and [t[1] for t in tiles] == [32] * 3
        assert page.eval_on_selector_all("#variations figcaption", "els => els.map(e => e.textContent)") == [
            "seed 2", "noise of 5", "noise of 2"]  # fmt: skip
        ref2 = reference(ckpt, tmp_path, 2)
        assert np.abs(decode(tiles[0][3]).astype(int) - ref2).max() <= 1
        assert np.abs(decode(tiles[2][3]).astype(int) - ref2).max() <= 1
        assert np.abs(decode(tiles[1][3]).astype(int) - ref2).mean() > 1

        # trajectory of seed 2: x_4..x_0, four predictions of x_0, four 16x16 sub-bands; x_0 is the sample
        traj = images("#trajectory img")
        names = [t[0] for t in traj]
        assert names[:5] == ["x4", "x3", "x2", "x1", "x0"] and names[-4:] == ["bandLL", "bandLH", "bandHL", "bandHH"]
        assert [t[1] for t in traj] == [32] * 9 + [16] * 4
        assert np.array_equal(decode(traj[4][3]), reference(ckpt, tmp_path, 2))
        assert "s" in page.inner_text("#traj-status") and "preset official_cifar10" in page.inner_text("#info")

        # bad input: one line in the page, and the server keeps serving
        page.fill("#seeds", "0-999")
        page.click("#grid-form button")
        page.wait_for_selector('#samples[data-status="error"]')
        assert "at most 64" in page.inner_text("#grid-status")
        # the images shown are not those of the inputs: dimmed, no download, the URL keeps the last good inputs
        assert "stale" in page.get_attribute("#grid", "class") and page.is_hidden("#grid-dl")
        assert "0-999" not in page.url
        page.fill("#seeds", "9")
        page.click("#grid-form button")
        page.wait_for_selector('#samples[data-status="ok"]')
        assert page.inner_text("#large figcaption") == "seed 9" and "seeds=9" in page.url and "seed=9" in page.url
        assert np.array_equal(decode(images("#large img")[0][3]), reference(ckpt, tmp_path, 9))
        assert "stale" not in (page.get_attribute("#grid", "class") or "") and page.is_visible("#grid-dl")

        # seeds above 2^53 stay exact (a JavaScript number would round them); tiles open with the keyboard
        big = 2**53 + 1
        page.fill("#seeds", f"{big},{2**63 - 1}")
        page.click("#grid-form button")
        page.wait_for_selector('#samples[data-status="ok"]')
        assert page.inner_text("#large figcaption") == f"seed {big}"
        page.focus(f'#grid figure[data-seed="{2**63 - 1}"]')
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.querySelector('#large figcaption').textContent === 'seed {2**63 - 1}'")
        assert f"seed={2**63 - 1}" in page.url

        # a shared URL reloads the same view; the grid downloads as one PNG
        page.goto(url + "?seeds=0-5&seed=4&a=1&b=3&n=5&vseed=2&others=5,2&vary=noise&traj=2")
        page.wait_for_selector('#samples[data-status="ok"]')
        assert np.array_equal(decode(images("#large img")[0][3]), ref4)
        with page.expect_download() as download:
            page.click("#grid-dl")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert Image.open(saved).size == (3 * 34 - 2, 2 * 34 - 2)  # 3 x 2 tiles, 2 px gaps
        for section in ("interp", "vari", "traj"):
            page.wait_for_selector(f'#{section}[data-status="ok"]', timeout=60_000)
        assert "vary=noise" in page.url and "others=5%2C2" in page.url
        shot = tmp_path / "playground.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert Image.open(shot).size[0] == 1280 and not errors and proc.poll() is None
    print(f"browser test: {time.perf_counter() - start:.1f} s, screenshot {shot}")
