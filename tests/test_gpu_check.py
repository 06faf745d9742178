"""benchmarks/gpu_check.sh --cpu: the accelerator check script runs end to end without a GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_script_runs_on_the_cpu(tmp_path):
    report = tmp_path / "report.json"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(report.read_text())
    assert r["ok"] and r["mode"].startswith("cpu")
    checks, training = r["tests_checks"], r["tests_training"]
    assert checks["failed"] == 0 and checks["passed"] >= 12, checks["cases"]
    assert all(
        checks["cases"][f"test_generator_fixture_on_device_fp32[{n}]"] == "passed"
        for n in ("tiny_wavelet", "tiny_normal")
    )
    assert "test_training_with_bf16_and_compile_then_resume" not in checks["cases"]
    assert training["cases"] == {"test_training_with_bf16_and_compile_then_resume": "passed"}
    assert [(b["preset"], b["setting"]) for b in r["bench"]] == [("tiny", "fp32"), ("tiny", "auto")]
    assert all(b["result"]["mean"] > 0 and b["result"]["batch"] == 2 for b in r["bench"])


def test_gpu_check_refuses_to_pretend_without_a_gpu(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "sees no CUDA device" in proc.stdout and "--cpu" in proc.stdout


def test_side_by_side_needs_the_authors_checkout(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "side_by_side.py"), "--authors-repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "not a checkout of the authors' WaveDiff" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_gpu_check_compile_step_plans_every_preset_compiled(monkeypatch):
    from wavediff.fastpath import extra_inductor_options

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    opts = SimpleNamespace(cpu=False, presets=["cifar10", "stl10"], warmup=5, runs=30)
    plan, common = gpu_check.bench_plan(opts, "compile")
    assert [(p, s) for p, s, _ in plan] == [
        ("cifar10", "fast+compile"),
        ("stl10", "fast+compile"),
        ("cifar10", "fast+compile+nchw"),
        ("cifar10", "fast+autotune"),
        ("cifar10", "fast+compile+freezing"),
        ("cifar10", "fast+compile+combo"),
        ("cifar10", "fast+compile+aggressive"),
        ("stl10", "fast+compile+nchw"),
    ]
    assert all(("--compile" in flags or "--compile-mode" in flags) and "--cuda-graphs" in flags for *_, flags in plan)
    # compiled GPU sampling is NHWC by default: the NCHW rows ask for it
    assert all(("--no-channels-last" in flags) == setting.endswith("nchw") for _, setting, flags in plan)
    assert plan[3][2][-2:] == ["--compile-mode", "max-autotune"]
    assert gpu_check.SETTING_ENV[plan[4][1]] == {"TORCHINDUCTOR_FREEZING": "1"}
    for _, setting, _ in plan[5:7]:  # inductor options that the sampler accepts from the environment
        options = json.loads(gpu_check.SETTING_ENV[setting]["WAVEDIFF_INDUCTOR_OPTIONS"])
        monkeypatch.setenv("WAVEDIFF_INDUCTOR_OPTIONS", json.dumps(options))
        assert extra_inductor_options() == options
    with_celeba, _ = gpu_check.bench_plan(SimpleNamespace(**{**vars(opts), "presets": ["celeba_256"]}), "compile")
    assert [s for _, s, _ in with_celeba] == [
        "fast+compile",
        "fast+compile+plain_gn",
        "fast+compile+cdt",
        "fast+compile+nchw",
    ]
    assert gpu_check.SETTING_ENV["fast+compile+plain_gn"] == {"WAVEDIFF_CHANNELWISE_GN": "0"}
    cdt = json.loads(gpu_check.SETTING_ENV["fast+compile+cdt"]["WAVEDIFF_INDUCTOR_OPTIONS"])
    monkeypatch.setenv("WAVEDIFF_INDUCTOR_OPTIONS", json.dumps(cdt))
    assert extra_inductor_options() == cdt == {"coordinate_descent_tuning": True}
    only_stl10, _ = gpu_check.bench_plan(SimpleNamespace(**{**vars(opts), "presets": ["stl10"]}), "compile")
    assert [s for _, s, _ in only_stl10] == ["fast+compile", "fast+compile+nchw"]
    default, _ = gpu_check.bench_plan(opts, "bench")
    assert [s for _, s, _ in default] == ["fp32", "fast", "fast", "fast+compile", "fast+nhwc"]
    assert "compile" not in gpu_check.DEFAULT_STEPS


def test_side_by_side_summary_reports_the_cuda_graph_training_column(capsys):
    """The GPU-only rows (tf32, the fast path, training replayed from CUDA graphs) reach the summary, as ratios
    against the authors' times of the same rounds (made-up times: the arithmetic and the labels are checked)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import side_by_side

    ours = {
        "default_precision": "bf16",
        "gflop_per_image": 13.3,
        "peak_gflops": {"fp32": 50_000.0, "bf16": 700_000.0},
        "sample": {"fp32/100": 0.066, "bf16/100": 0.053, "tf32/100": 0.06, "fast/100": 0.02},
        "train": {"fp32/r1/32": 0.113, "bf16/r1/32": 0.111, "graphs/r1/32": 0.04},
    }
    theirs = {"sample": {"fp32/100": 0.0635}, "train": {"r1/32": 0.147}}
    rows = side_by_side._summarise("cifar10", {"max_diff": 7e-6}, {"ours": [ours, ours], "authors": [theirs, theirs]})
    assert rows["train"]["r1/32"]["ours_cuda_graphs"] == 0.04 and rows["sample"]["100"]["ours_fast"] == 0.02
    out = capsys.readouterr().out
    assert "--cuda-graphs (fp32): 0.0400 s, 3.67x" in out and "fast path (+CUDA graphs): 0.0200 s, 3.17x" in out


def test_side_by_side_summary_reports_direct_convolutions_beside_winograd_on_a_cpu(capsys):
    """On a CPU our fp32 sampler is also timed with direct convolutions (`--no-winograd`): that time gets its own
    ratio, and the GFLOP/s figure counts it (Winograd's arithmetic is not the FLOPs counted)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import side_by_side

    ours = {
        "default_precision": "fp32",
        "gflop_per_image": 13.4,
        "peak_gflops": {"fp32": 335.0},
        "sample": {"fp32/8": 0.4, "direct/8": 0.5},
        "train": {},
    }
    theirs = {"sample": {"fp32/8": 0.55}, "train": {}}
    rows = side_by_side._summarise("cifar10", {"max_diff": 3e-6}, {"ours": [ours] * 3, "authors": [theirs] * 3})
    assert rows["sample"]["8"]["ours_fp32"] == 0.4 and rows["sample"]["8"]["ours_fp32_direct"] == 0.5
    assert rows["sample"]["8"]["ours_fp32_gflops"] == pytest.approx(13.4 * 8 / 0.5)
    out = capsys.readouterr().out
    assert "direct convolutions (--no-winograd): 0.5000 s, 1.10x" in out and "1.38x" in out


def test_profile_sampler_runs_on_the_cpu_and_nf_shrinks_only_the_channels(capsys, monkeypatch):
    """`profile_sampler.py --nf` keeps the network's structure (the same operators, so the same fixed costs) and
    only narrows it: the profile lists as many convolution calls as the full-width network's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import profile_sampler

    def conv_calls(extra):
        profile_sampler.main(["--preset", "tiny", "--batch", "1", "--device", "cpu", "--rows", "60", *extra])
        out = capsys.readouterr().out
        params = float(re.search(r"\(([0-9.]+)M parameters\)", out).group(1))
        assert "ms per pass" in out
        rows = [line.split() for line in out.splitlines() if "_convolution_pointwise" in line or "aten::conv2d" in line]
        return params, sorted((r[0], int(r[-1])) for r in rows)

    (full_params, full), (narrow_params, narrow) = conv_calls([]), conv_calls(["--nf", "8"])
    assert full and full == narrow
    assert narrow_params < full_params / 2


def test_profile_sampler_sorts_kernels_by_kind():
    """The by-kind split of a profile, on kernel names from H100 profiles (cuDNN, cuBLAS, ATen and inductor's)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import profile_sampler

    kinds = {
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>": "layout copy",
        "void at::native::elementwise_kernel<128, 4, at::native::direct_copy_kernel_cuda>": "layout copy",
        "void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float>": "normalisation",
        "void at::native::(anonymous namespace)::CatArrayBatchedCopy<float>": "concatenation",
        "sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize32x32x8": "matrix product",
        "nvjet_sm90_tst_512x64_64x2_2x1_v_bz_coopB_NNN": "matrix product",
        "triton_red_fused_add_cat_convolution_mul_native_group_norm_3": "normalisation",
        "triton_poi_fused_convolution_silu_26": "element-wise / other",
        "triton_tem_fused_convolution_4": "convolution",
        "triton_tem_fused_addmm_7": "matrix product",
        "void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel>": "element-wise / other",
    }
    assert {name: profile_sampler.kernel_kind(name) for name in kinds} == kinds
    events = [SimpleNamespace(key=name, self_device_time_total=1000.0) for name in kinds]
    totals = profile_sampler.by_kind(events, "self_device_time_total")
    counts = {kind: list(kinds.values()).count(kind) * 1e-3 for kind in set(kinds.values())}
    assert totals == pytest.approx(counts) and next(iter(totals)) == "matrix product"  # seconds, largest first


def _gpu_check_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    return gpu_check


def test_a_step_that_times_out_takes_its_children_with_it(tmp_path):
    gpu_check = _gpu_check_module()
    pid_file = tmp_path / "child.pid"
    spawn = (
        "import subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); open({str(pid_file)!r}, 'w')"
        ".write(str(c.pid)); time.sleep(60)"
    )
    row = gpu_check._run([sys.executable, "-c", spawn], dict(os.environ), timeout=3)
    assert row["rc"] == "timeout"
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # gone (or a zombie already reaped by init): no orphan keeps running
        for _ in range(50):
            os.kill(child, 0)
            __import__("time").sleep(0.1)
    assert gpu_check._run(["true"], {}, timeout=0.5)["rc"] == "skipped: out of budget"


def test_an_earlier_runs_result_file_is_never_reported(tmp_path, monkeypatch):
    gpu_check = _gpu_check_module()
    opts = SimpleNamespace(workdir=str(tmp_path), device="cpu", cpu=True, presets=["tiny"], runs=2, warmup=1)
    stale = {"mean": 0.2, "batch": 2}
    for _, setting, _ in gpu_check.bench_plan(opts, "bench")[0]:
        (tmp_path / f"bench_tiny_{setting}.json").write_text(json.dumps(stale))
    monkeypatch.setattr(gpu_check, "_run", lambda cmd, env, timeout: {"rc": "timeout", "tail": ""})
    rows = gpu_check.benches(opts, {}, gpu_check.time.perf_counter() + 60, [], lambda: None)
    assert rows and all("result" not in row for row in rows)
    assert not list(tmp_path.glob("bench_*.json"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--budget", "0"], "--budget must be a positive number"),
        (["--budget", "-5"], "--budget must be a positive number"),
        (["--steps", "side"], "--steps side needs --authors-repo"),
        (["--out", "report.txt"], "must name a .json file"),
    ],
)
def test_gpu_check_refuses_bad_options_before_any_step(tmp_path, args, expected):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu", "--out", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd + args, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and expected in proc.stdout, proc.stdout + proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_bench_parallel_compiles_together_and_times_alone(tmp_path):
    """benchmarks/bench_parallel.py on the CPU: each setting's worker reports its timing (with its own environment
    and torch flags), a profiled one writes its table, a worker that fails is named with its last lines, and the
    folder gets only the results (the logs and markers live in a temporary folder that goes away)."""
    jobs = [
        {"name": "plain", "preset": "tiny", "batch": 2, "device": "cpu", "runs": 3, "fast": {"precision": "fp32"}},
        {
            "name": "profiled",
            "preset": "tiny",
            "batch": 1,
            "device": "cpu",
            "runs": 2,
            "fast": {"precision": "fp32"},
            "env": {"WAVEDIFF_CHANNELWISE_GN": "0"},
            "torch_flags": {"mkldnn.enabled": True},
            "profile": True,
            "rows": 5,
        },
        {"name": "broken", "preset": "tiny", "batch": 1, "device": "cpu", "torch_flags": {"cudnn.enabled": "no"}},
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_parallel.py"), str(tmp_path / "jobs.json")]
    cmd += ["--out", str(out), "--compile-cap", "200", "--total-cap", "300", "--after", "echo ALONE"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one setting failed
    results = json.loads((out / "results.json").read_text())
    assert sorted(results) == ["plain", "profiled"]
    assert results["plain"]["runs"] == 3 and results["profiled"]["runs"] == 2
    assert results["profiled"]["env"] == {"WAVEDIFF_CHANNELWISE_GN": "0"}
    assert 0 < results["plain"]["min_ms"] <= results["plain"]["median_ms"]
    assert "by kind:" in (out / "profiled.prof.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["profiled.prof.txt", "results.json", "worker_logs.txt"]
    assert "ALONE" in proc.stdout
    assert re.search(r"broken: not ready after \d+ s \(crashed \(exit 1\)\)", proc.stdout)
    assert re.search(r"broken +no result; its last lines:\n(.*\n)*.*expects a bool", proc.stdout)
    # one at a time: a setting starts timing only after the previous one's last line (its worker has exited)
    spans = {}
    line = r"\[(\d+):(\d+):(\d+)\.(\d+)\] (\w+): (?:timing|\S+ ms median|profiled)"
    for h, m, sec, ms, name in re.findall(line, (out / "worker_logs.txt").read_text()):
        t = int(h) * 3600 + int(m) * 60 + int(sec) + int(ms) / 1000
        first, last = spans.get(name, (t, t))
        spans[name] = (min(first, t), max(last, t))
    assert sorted(spans) == ["plain", "profiled"]
    (_, end_first), (start_second, _) = sorted(spans.values())
    assert end_first <= start_second
    # a jobs file that could not run is refused in one line, before any worker starts
    for bad, message in (
        ([{"name": "x", "preset": "tiny", "batch": 1, "fast": {"precison": "fp32"}}], "setting x: FastPath"),
        ([{"name": "x", "preset": "tiny"}], "setting x needs a batch"),
        ([{"name": "a b", "preset": "tiny", "batch": 1}], "needs a unique name"),
        ([{"name": "x", "preset": "tiny", "batch": 1, "colour": 1}], "unknown keys ['colour']"),
        ({}, "non-empty JSON list"),
        ([{"name": 5, "preset": "tiny", "batch": 1}], "needs a unique name"),
        ([{"name": "x", "preset": "tiny", "batch": True}], "batch must be a whole number"),
        ([{"name": "x", "preset": "tiny", "batch": 1, "env": {"X": 1}}], "env values must be strings"),
        ([{"name": "x", "preset": "tiny", "batch": 1, "torch_flags": {"cudnn.nope": 1}}], "cudnn.nope does not exist"),
        ([{"name": "x", "preset": "tiny", "batch": 1, "device": "gpu"}], "setting x: "),
    ):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        proc = subprocess.run(cmd[:2] + [str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_gpu_check_compile_step_runs_its_benches_in_parallel(tmp_path, monkeypatch):
    """--steps compile hands its benches to bench_parallel.py (compiled together, timed alone) and reports each as a
    bench row; the flags become FastPath fields through the CLI's own parser. (An uncompiled plan here: compiling
    would take a minute of this test's CPU.)"""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    gpu_opts = SimpleNamespace(cpu=False, presets=["celeba_256"], warmup=5, runs=30, device="cuda")
    jobs = {job["name"]: job for job in gpu_check.compile_jobs(gpu_opts)}
    assert jobs["celeba_256_fast.compile.nchw"]["fast"] == {
        "precision": "bf16",
        "compile": True,
        "compile_mode": "default",
        "cuda_graphs": True,
        "channels_last": False,
        "winograd": None,
    }
    assert jobs["celeba_256_fast.compile.plain_gn"]["env"] == {"WAVEDIFF_CHANNELWISE_GN": "0"}
    assert {(j["batch"], j["runs"], j["device"]) for j in jobs.values()} == {(100, 30, "cuda")}

    plan = [
        ("tiny", "fp32", ["--precision", "fp32"]),
        ("tiny", "fp32+nhwc", ["--precision", "fp32", "--channels-last"]),
    ]
    monkeypatch.setattr(gpu_check, "bench_plan", lambda opts, step: (plan, []))
    report = tmp_path / "report.json"
    assert gpu_check.main(["--cpu", "--steps", "compile", "--budget", "200", "--out", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["ok"] and [(row["preset"], row["setting"]) for row in r["compile"]] == [(p, s) for p, s, _ in plan]
    for row in r["compile"]:
        assert row["rc"] == 0 and row["result"]["batch"] == 2 and 0 < row["result"]["mean"] < 10
    assert r["compile"][1]["result"]["setting"] == "fp32, channels_last"
    # too little time left for a compile: said, not a usage error of bench_parallel
    assert gpu_check.main(["--cpu", "--steps", "compile", "--budget", "20", "--out", str(report)]) == 1
    assert {row["rc"] for row in json.loads(report.read_text())["compile"]} == {"no result (skipped: out of budget)"}
    # a mistyped preset is refused before any step (it used to empty the compile step, which then said ok)
    assert gpu_check.main(["--cpu", "--presets", "cifar", "--out", str(report)]) == 2
