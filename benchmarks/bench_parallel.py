"""Compile many sampler settings at once, then time them one at a time on a quiet GPU.

    python benchmarks/bench_parallel.py jobs.json --out results/ [--compile-cap 230] [--total-cap 320]
        [--setting-cap 90] [--during "CMD"] [--after "CMD"]

Compiling a batch-100 sampler takes a minute or two of CPU per setting (dynamo, inductor, Triton); timing it takes
seconds of GPU. Run one after another, ten settings need most of a short GPU lease. Here every setting gets its own
worker process at once: each builds its sampler, compiles it and warms it up (three passes: cuDNN's autotuner and
the CUDA graph capture included), then waits. When every worker is ready (or `--compile-cap` seconds have passed:
the stragglers are stopped and reported) and the `--during` commands have run (stopped at the compile cap), this
script lets the workers time their settings one at a time: the next one starts only once the previous worker has
exited, so no setting shares the device with another one's passes or teardown. Each does 3 more warm-up passes,
then `runs` timed passes (CUDA events on a GPU), as `wavediff bench` does, within `--setting-cap` seconds. On an
H100 machine (16 cores) nine compiled batch-100 settings were ready within 160 s and timed within 250 s; one after
another they took 60-130 s each.

jobs.json is a list of settings, e.g.

    [{"name": "celeba", "preset": "celeba_256", "batch": 100, "runs": 20,
      "fast": {"precision": "bf16", "compile": true, "cuda_graphs": true},
      "env": {"WAVEDIFF_CHANNELWISE_GN": "0"},
      "torch_flags": {"cudnn.deterministic": true},
      "profile": true, "rows": 45, "device": "cuda", "threads": 4}]

name, preset and batch are required. fast: wavediff.fastpath.FastPath's fields. env: that worker's environment
variables (strings). torch_flags: torch.backends.<module>.<flag> = value before the sampler is built (the sampler
sets cudnn.benchmark, cudnn.benchmark_limit and the allow_tf32 flags itself during each pass, so those have no
effect). profile: one more pass under torch.profiler, its `rows` largest entries written out. device: default cuda.
threads: inductor's compile workers for that process (default 4: all of them at once would oversubscribe the cores).

Written to --out (earlier files of these names are removed first): results.json (every timed setting: median,
mean, std, min in ms), worker_logs.txt (the end of each worker's output), NAME.prof.txt for each profiled setting;
a short table is printed last. Ctrl-C or SIGTERM stops the workers and keeps what was timed. The Triton kernels'
block sizes that inductor picks while compiling are benchmarked on a GPU that the other workers use too: they may
differ from a compile alone (the timings themselves are taken alone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KEYS = {"name", "preset", "batch", "fast", "env", "torch_flags", "runs", "profile", "rows", "device", "threads"}
OUTPUTS = ("results.json", "worker_logs.txt")


def log(msg: str) -> None:
    now = time.time()
    print(f"[{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d}] {msg}", flush=True)


def _backend_flag(flag: str):
    """(object, attribute) of torch.backends.<module>.<attribute>, or a one-line reason it is not one."""
    import torch

    module, _, attr = flag.rpartition(".")
    target = torch.backends
    for part in module.split(".") if module else []:
        target = getattr(target, part, None)
    if not module or target is None or not hasattr(target, attr):
        raise ValueError(f"torch_flags: torch.backends.{flag} does not exist (e.g. cudnn.deterministic)")
    return target, attr


def check_jobs(jobs) -> None:
    """One-line errors for a jobs file that could not run, before any worker starts."""
    import torch

    from wavediff.fastpath import FastPath
    from wavediff.presets import get_preset

    if not isinstance(jobs, list) or not jobs:
        raise SystemExit("error: the jobs file must hold a non-empty JSON list of settings")
    names = set()
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise SystemExit(f"error: setting {i} is not a JSON object")
        unknown = set(job) - KEYS
        if unknown:
            raise SystemExit(f"error: setting {i} has unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
        name = job.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in names:
            raise SystemExit(f"error: setting {i} needs a unique name of letters, digits, '_', '.', '-' (got {name!r})")
        names.add(name)
        if "batch" not in job:
            raise SystemExit(f"error: setting {name} needs a batch")
        for key in ("batch", "runs", "rows", "threads"):
            value = job.get(key, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SystemExit(f"error: setting {name}: {key} must be a whole number >= 1, not {value!r}")
        for key in ("fast", "env", "torch_flags"):
            if not isinstance(job.get(key, {}), dict):
                raise SystemExit(f"error: setting {name}: {key} must be a JSON object")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in job.get("env", {}).items()):
            raise SystemExit(f'error: setting {name}: env values must be strings, e.g. "1"')
        try:
            get_preset(job.get("preset", ""))
            FastPath(**job.get("fast", {}))
            torch.device(job.get("device", "cuda"))
            for flag in job.get("torch_flags", {}):
                _backend_flag(flag)
        except Exception as e:  # noqa: BLE001 - a bad preset, FastPath field, device or flag, said in one line
            raise SystemExit(f"error: setting {name}: {str(e).splitlines()[0]}") from None


def worker(job: dict, out: Path, work: Path, master: int) -> None:
    import torch

    from wavediff.fastpath import FastPath
    from wavediff.models.generator import build_generator
    from wavediff.presets import get_preset
    from wavediff.runtime import configure_torch
    from wavediff.timing import sampler_pass, time_passes

    configure_torch()
    for flag, value in job.get("torch_flags", {}).items():
        setattr(*_backend_flag(flag), value)
    name, device = job["name"], torch.device(job.get("device", "cuda"))
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = get_preset(job["preset"])
    G = build_generator(cfg.generator).to(device).eval().requires_grad_(False)
    fast = FastPath(**job.get("fast", {}))
    t0 = time.time()
    with torch.no_grad():
        once = sampler_pass(G, cfg, job["batch"], device, fast)
        for _ in range(3):
            once()
        sync()
    ready_s = time.time() - t0
    setting = fast.describe(device, G)
    log(f"{name}: ready after {ready_s:.0f} s ({setting})")
    (work / f"ready.{name}").touch()
    while not (work / f"go.{name}").exists():  # the device is this worker's alone once the master says go
        if os.getppid() != master:  # the master is gone (even killed outright): nobody will say go
            raise SystemExit(f"{name}: the master process has gone; stopping")
        time.sleep(0.05)
    log(f"{name}: timing")
    with torch.no_grad():
        for _ in range(3):
            once()
        sync()
        times = [seconds * 1000 for seconds in time_passes(once, device, job.get("runs", 20))]
        result = dict(
            name=name, preset=job["preset"], batch=job["batch"], env=job.get("env", {}),
            torch_flags=job.get("torch_flags", {}), setting=setting, runs=len(times),
            median_ms=statistics.median(times), mean_ms=statistics.fmean(times),
            std_ms=statistics.pstdev(times), min_ms=min(times), ready_s=round(ready_s, 1),
            torch=torch.__version__, device=torch.cuda.get_device_name(device) if cuda else "cpu",
        )  # fmt: skip
        (work / f"{name}.json").write_text(json.dumps(result, indent=1))
        log(f"{name}: {result['median_ms']:.2f} ms median")
        if job.get("profile"):
            profile(once, sync, cuda, name, job.get("rows", 45), out)


def profile(once, sync, cuda: bool, name: str, rows: int, out: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_sampler import by_kind, profile_pass

    _, events, key, leaves, busy = profile_pass(once, sync, cuda)
    kinds = ", ".join(f"{k} {t * 1000:.2f} ms" for k, t in by_kind(leaves, key).items())
    text = f"{name}: {'kernels' if cuda else 'operators (self)'} {busy * 1000:.2f} ms; by kind: {kinds}\n"
    (out / f"{name}.prof.txt").write_text(text + events.table(sort_by=key, row_limit=rows, max_name_column_width=70))
    log(f"{name}: profiled, {busy * 1000:.2f} ms")


def _exit_note(p: subprocess.Popen) -> str:
    rc = p.poll()
    return "still compiling: stopped" if rc is None else f"crashed (exit {rc})"


def master(opts) -> int:
    try:
        jobs = json.loads(Path(opts.jobs).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read the jobs file {opts.jobs}: {e}") from None
    check_jobs(jobs)
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in [*out.glob("*.prof.txt"), *(out / name for name in OUTPUTS)]:
            old.unlink(missing_ok=True)  # never an earlier run's figures
    except OSError as e:
        raise SystemExit(f"error: cannot use --out {out}: {e.strerror or e}; give a writable folder") from None
    work = Path(tempfile.mkdtemp(prefix="bench_parallel_"))  # logs, markers: the results only go to --out
    start = time.time()
    procs: dict[str, subprocess.Popen] = {}
    try:
        for job in jobs:
            env = dict(os.environ, **job.get("env", {}))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
            env["TORCHINDUCTOR_COMPILE_THREADS"] = str(job.get("threads", 4))
            with open(work / f"{job['name']}.log", "w") as f:
                cmd = [sys.executable, __file__, "--worker", json.dumps(job), str(out), str(work), str(os.getpid())]
                procs[job["name"]] = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        log(f"{len(procs)} workers compiling")
        for cmd in opts.during:
            left = opts.compile_cap - (time.time() - start)
            log(f"while they compile ({left:.0f} s at most): {cmd}")
            subprocess.run(["timeout", str(max(int(left), 1)), "sh", "-c", cmd])
        while time.time() - start < opts.compile_cap:
            if all((work / f"ready.{n}").exists() or p.poll() is not None for n, p in procs.items()):
                break
            time.sleep(0.5)
        for n, p in procs.items():
            if not (work / f"ready.{n}").exists():
                log(f"{n}: not ready after {time.time() - start:.0f} s ({_exit_note(p)})")
                p.kill()
        log(f"timing, one setting at a time ({time.time() - start:.0f} s)")
        for n, p in procs.items():
            if not (work / f"ready.{n}").exists():
                continue
            left = opts.total_cap - (time.time() - start)
            if left < 1:
                log(f"{n}: out of time before its turn; stopped")
                p.kill()
                continue
            (work / f"go.{n}").touch()
            try:
                p.wait(timeout=min(opts.setting_cap, left))
            except subprocess.TimeoutExpired:
                log(f"{n}: not done within {min(opts.setting_cap, left):.0f} s of its turn; stopped")
                p.kill()
                p.wait()
        code = report(procs, out, work)
        for cmd in opts.after:
            left = opts.total_cap - (time.time() - start)
            if left < 10:
                log(f"out of time for: {cmd}")
                continue
            log(f"then ({left:.0f} s left): {cmd}")
            subprocess.run(["timeout", str(int(left)), "sh", "-c", cmd])
        return code
    except KeyboardInterrupt:
        for p in procs.values():
            p.kill()
        report(procs, out, work, quiet=True)
        print("bench_parallel: interrupted; results.json holds the settings timed before it", file=sys.stderr)
        return 130
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


def report(procs: dict, out: Path, work: Path, quiet: bool = False) -> int:
    results = {}
    with open(out / "worker_logs.txt", "w") as logs:
        for n in procs:
            text = (work / f"{n}.log").read_text(errors="replace") if (work / f"{n}.log").exists() else ""
            logs.write(f"===== {n}\n{text[-6000:]}\n")
            if (work / f"{n}.json").exists():
                results[n] = json.loads((work / f"{n}.json").read_text())
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for n in [] if quiet else procs:
        if n in results:
            r = results[n]
            print(f"{n:28s} {r['median_ms']:9.2f} ms median  (std {r['std_ms']:.2f}; ready {r['ready_s']:.0f} s)")
        else:
            print(f"{n:28s}  no result; its last lines:")
            text = (work / f"{n}.log").read_text(errors="replace").splitlines()[-4:]
            print("    " + "\n    ".join(text))
    return 0 if len(results) == len(procs) else 1


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", help="JSON list of settings (see the top of this file)")
    ap.add_argument("--out", default="bench_parallel_out", help="folder for results.json and the logs")
    ap.add_argument("--compile-cap", type=float, default=230, help="seconds the compiles may take")
    ap.add_argument("--total-cap", type=float, default=320, help="seconds for everything")
    ap.add_argument("--setting-cap", type=float, default=90, help="seconds one setting's timing may take")
    ap.add_argument("--during", action="append", default=[], help="a command to run while they compile")
    ap.add_argument("--after", action="append", default=[], help="a command to run alone after the timings")
    opts = ap.parse_args(argv)
    if not 0 < opts.compile_cap < opts.total_cap or opts.setting_cap <= 0:
        ap.error("--compile-cap must be positive and below --total-cap, and --setting-cap positive")
    signal.signal(signal.SIGTERM, _interrupted)  # as Ctrl-C: the workers stop, what was timed is kept
    return master(opts)


if __name__ == "__main__":
    sys.exit(main())
