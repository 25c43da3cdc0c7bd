"""The GPU check in one command, offline: per backend, the device, the default train, the
suite and a short benchmark, written as one markdown report (for ``docs/gpu.md``).

It runs on a machine that has the backends but no package index (the lent H200: no
Keras there): ``--wheels DIR`` installs the wheels of that folder (e.g.
``../shared/device-wheels``, carried into the project as ``.whl/``) into a folder of
its own and puts it on ``PYTHONPATH`` for every step. Each backend that imports is
checked; one without a GPU fails the check unless ``--allow-no-gpu`` (how CI and the
tests run it on a CPU). Budget: ``--suite-timeout`` and ``--bench-timeout`` per backend
(300 s and 100 s: the whole check within 8 minutes for two backends).

Usage on the GPU machine::

    python3 scripts/gpu_check.py --wheels .whl --report $OUT/gpu-report.md

Exit code: 0 when every step of every backend passed, else 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("jax", "torch", "tensorflow")

DEVICE = """
import keras
backend = keras.backend.backend()
if backend == "jax":
    import jax
    devices = [f"{d.platform}:{getattr(d, 'device_kind', d)}" for d in jax.devices()]
    versions = f"jax {jax.__version__}"
elif backend == "torch":
    import torch
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    versions = f"torch {torch.__version__}"
else:
    import tensorflow as tf
    devices = [d.name for d in tf.config.list_physical_devices("GPU")]
    versions = f"tensorflow {tf.__version__}"
from zoo.precision import accelerator_present
print(f"keras {keras.__version__}, {versions}; GPU: {accelerator_present()}; {devices}")
"""


def _step(argv, env, timeout, cwd=ROOT) -> tuple[int, str, float]:
    """``(exit code, output, seconds)``; 124 when it ran past ``timeout``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code = 124
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(
            errors="replace"
        )
    return code, out, time.perf_counter() - start


def _install_wheels(wheels: Path) -> str:
    """The wheels of ``wheels`` installed into a new folder; returns it."""
    target = tempfile.mkdtemp(prefix="zoo-gpu-check-")
    found = sorted(str(w) for w in wheels.glob("*.whl"))
    if not found:
        raise SystemExit(f"gpu_check: --wheels {str(wheels)!r} holds no .whl file")
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*argv, "--target", target, *found], check=True)
    return target


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return lines[-1].strip("= ") if lines else "no summary (stopped?)"


def _slowest(output: str, n: int = 20) -> list[str]:
    lines = [line for line in output.splitlines() if re.match(r"^\d+\.\d+s (call|setup)", line)]
    return lines[:n]


def check_backend(backend: str, args, env: dict, workdir: Path) -> tuple[bool, list[str]]:
    env = {**env, "KERAS_BACKEND": backend}
    lines, ok = [f"## {backend}", ""], True
    code, out, took = _step([sys.executable, "-c", DEVICE], env, 300)
    device = out.strip().splitlines()[-1] if out.strip() else "(nothing printed)"
    gpu = code == 0 and "GPU: True" in device
    lines.append(f"- device: {device} ({took:.1f} s)")
    if code != 0 or not (gpu or args.allow_no_gpu):
        lines.append(f"- **failed**: the backend sees no GPU (exit {code}); the rest skipped")
        return False, [*lines, ""]
    run = workdir / f"run-{backend}"
    train = [sys.executable, "-m", "zoo", "--backend", backend, "train", "--out", str(run)]
    code, out, took = _step([*train, "--quiet", *args.train_args], env, args.train_timeout)
    metrics = [line for line in out.splitlines() if line.startswith("test metrics:")]
    lines.append(
        f"- default train: exit {code}, {took:.1f} s wall, {metrics[-1] if metrics else '-'}"
    )
    ok &= code == 0
    workers = args.workers or max(1, (os.cpu_count() or 2) // 2)
    suite = [sys.executable, "-m", "pytest", "-q", "-n", str(workers), "--dist", "loadgroup"]
    suite += ["--durations=20", "-p", "no:cacheprovider", *args.suite_args]
    code, out, took = _step(suite, env, args.suite_timeout)
    lines.append(f"- suite (`-n {workers}`): exit {code}, {took:.0f} s, {_summary(out)}")
    failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    lines += [f"  - {line[:200]}" for line in failed[:30]]
    slow = _slowest(out)
    if slow:
        lines += ["", "  The slowest:", "", *(f"      {line}" for line in slow)]
    ok &= code == 0
    bench = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--backend", backend]
    code, out, took = _step([*bench, *args.bench_args], env, args.bench_timeout, cwd=workdir)
    table = [line for line in out.splitlines() if line.startswith("|")]
    lines += ["", f"- benchmark: exit {code}, {took:.0f} s", "", *table]
    ok &= code == 0
    return ok, [*lines, ""]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--wheels", type=Path, help="install these wheels first (offline)")
    parser.add_argument("--allow-no-gpu", action="store_true", help="check on a CPU too")
    parser.add_argument("--report", type=Path, default=Path("gpu-report.md"))
    parser.add_argument("--workers", type=int, help="pytest-xdist workers (default: cores/2)")
    parser.add_argument("--suite-timeout", type=float, default=300)
    parser.add_argument("--bench-timeout", type=float, default=100)
    parser.add_argument("--train-timeout", type=float, default=300)
    parser.add_argument("--suite-args", default="", help="more pytest arguments, e.g. '-k golden'")
    parser.add_argument(
        "--bench-args",
        default="--models mnist_mlp toy_resnet --windows 3 --rounds 1 --no-side-by-side",
        help="benchmark.py's arguments",
    )
    parser.add_argument("--train-args", default="", help="more `zoo train` arguments")
    args = parser.parse_args(argv)
    for name in ("suite_args", "bench_args", "train_args"):
        setattr(args, name, getattr(args, name).split())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    if args.wheels:
        site = _install_wheels(args.wheels)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, str(ROOT), env.get("PYTHONPATH")]))
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    present = [b for b in args.backends if importlib.util.find_spec(b) is not None]
    start = time.perf_counter()
    report = [
        "# GPU check",
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; backends here: {present}",
        "",
    ]
    ok = bool(present)
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-check-") as work:
        for backend in present:
            passed, lines = check_backend(backend, args, env, Path(work))
            ok &= passed
            report += lines
    report.append(f"Total: {time.perf_counter() - start:.0f} s; {'passed' if ok else 'FAILED'}")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
