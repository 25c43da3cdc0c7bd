"""The GPU check in one command, offline: per backend, the device, what TF32 does to every
model's outputs, the default train (and where its startup goes), the suite and the GPU
benchmark, written as one markdown report (for ``docs/gpu.md``).

It runs on a machine that has the backends but no package index (the lent H200: no
Keras there): ``--wheels DIR`` installs the wheels of that folder (e.g.
``../shared/device-wheels``, carried into the project as ``.whl/``) into a folder of
its own and puts it on ``PYTHONPATH`` for every step; ``--mnist FILE`` puts Keras's
``mnist.npz`` into the Keras cache when it is not there (the machine cannot download
it). Each backend that imports is checked; one without a GPU fails the check unless
``--allow-no-gpu`` (how the tests run it on a CPU).

The steps, in three phases, so that timings never share the GPU and the whole check
stays within 8 minutes for two backends on a 16-core machine:

1. per backend in turn: the device; TF32 against full float32 on every registered
   model's outputs; ``zoo train`` with the defaults (and ``--fast`` settings asked
   for); the default run's startup, phase by phase;
2. per backend in turn: ``scripts/benchmark.py`` with its GPU profile
   (``--bench-timeout``, its own ``--budget`` inside);
3. every backend's suite at once, ``-n`` sized to share the cores
   (``--suite-timeout`` each), after ``--diagnose`` tests run alone (with
   ``TORCH_LOGS=recompiles`` on torch).

The report is rewritten after each step, so a check stopped from outside keeps what it
measured; ``--logs DIR`` keeps every step's whole output.

Usage on the GPU machine::

    python3 scripts/gpu_check.py --wheels .whl --mnist .whl/mnist.npz \\
        --report $OUT/gpu-report.md --logs /tmp/logs

Exit code: 0 when every step of every backend passed, else 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
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

# Each registered model built twice from seed 0 and run by Keras's predict on the same
# inputs, under full float32 and under TF32: the largest difference of their outputs,
# against the largest output (a fresh model each time, so no compiled function is shared
# between the two; predict compiles one function per model where a direct call would
# run op by op, which JAX compiles one primitive at a time).
TF32_EFFECT = """
import keras, numpy as np, zoo
from zoo.inputs import sample_inputs
from zoo.precision import float32_precision_scope
print("| model | max abs difference, TF32 against highest | largest output | relative |")
print("|---|---:|---:|---:|")
for name in zoo.list_models():
    outs = []
    for precision in ("highest", "tf32"):
        with float32_precision_scope(precision):
            keras.utils.set_random_seed(0)
            model = zoo.create(name)
            x = sample_inputs(model, 16, seed=1)
            y = model.predict(x, batch_size=16, verbose=0)
            outs.append([np.asarray(o, np.float64) for o in keras.tree.flatten(y)])
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*outs))
    scale = max(float(np.max(np.abs(a))) for a in outs[0])
    print(f"| `{name}` | {diff:.1e} | {scale:.2g} | {diff / max(scale, 1e-30):.1e} |")
"""


# The default run's startup, phase by phase in one process: what `zoo train` does before
# its first step (the backend, the device, the zoo's modules, MNIST, the model) and the
# first step itself (tracing and compiling).
STARTUP = """
import time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import keras
mark("import keras and the backend")
keras.ops.convert_to_numpy(keras.ops.matmul(keras.ops.ones((8, 8)), keras.ops.ones((8, 8))))
mark("the device's first operation")
import zoo, zoo.cli, zoo.training
mark("import the zoo (cli, training)")
from zoo import datasets
(x, y), _ = datasets.load("mnist")
mark("load MNIST")
model = zoo.create("mnist_mlp")
zoo.training.recipe_for("mnist_mlp").compile(model)
mark("build and compile mnist_mlp")
model.train_on_batch(x[:64], y[:64])
mark("the first training step")
model.train_on_batch(x[64:128], y[64:128])
mark("the second training step")
print("| phase | seconds |")
print("|---|---:|")
for (_, before), (name, at) in zip(marks, marks[1:]):
    print(f"| {name} | {at - before:.2f} |")
"""


class Report:
    """The markdown report, rewritten whole after every step."""

    def __init__(self, path: Path, head: list[str]):
        self.path, self.lines, self.start = path, list(head), time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def add(self, *lines: str) -> None:
        self.lines += lines
        self.write()

    def write(self, footer: str = "") -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join([*self.lines, footer]) + "\n")
        os.replace(tmp, self.path)

    def finish(self, ok: bool) -> str:
        took = time.perf_counter() - self.start
        footer = f"Total: {took:.0f} s; {'passed' if ok else 'FAILED'}"
        self.write(footer)
        return "\n".join([*self.lines, footer])


def _step(argv, env, timeout, cwd=ROOT, log: Path | None = None) -> tuple[int, str, float]:
    """``(exit code, output, seconds)``; 124 when it ran past ``timeout``. ``log``
    keeps the whole output."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code = 124
        out = _text(e.stdout) + _text(e.stderr)
    if log is not None:
        log.write_text(out)
    return code, out, time.perf_counter() - start


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _install_wheels(wheels: Path) -> str:
    """The wheels of ``wheels`` installed into a new folder; returns it."""
    target = tempfile.mkdtemp(prefix="zoo-gpu-check-")
    found = sorted(str(w) for w in wheels.glob("*.whl"))
    if not found:
        raise SystemExit(f"gpu_check: --wheels {str(wheels)!r} holds no .whl file")
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*argv, "--target", target, *found], check=True)
    return target


def _place_mnist(mnist: Path, env: dict) -> str:
    """Copies ``mnist`` into the Keras cache unless a file is there; says which."""
    if not mnist.is_file():
        raise SystemExit(f"gpu_check: --mnist {str(mnist)!r} is not a file")
    home = Path(env.get("KERAS_HOME") or Path.home() / ".keras")
    cached = home / "datasets" / "mnist.npz"
    if cached.exists():
        return f"MNIST: {cached} already there"
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mnist, cached)
    return f"MNIST: copied {mnist} to {cached}"


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return lines[-1].strip("= ") if lines else "no summary (stopped?)"


def _slowest(output: str, n: int = 20) -> list[str]:
    lines = [line for line in output.splitlines() if re.match(r"^\d+\.\d+s (call|setup)", line)]
    return lines[:n]


def _table(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("|")]


class Backend:
    def __init__(self, name: str, args, env: dict, workdir: Path, report: Report):
        self.name, self.args, self.report = name, args, report
        self.env = {**env, "KERAS_BACKEND": name}
        self.workdir, self.ok, self.usable = workdir, True, False

    def log(self, step: str) -> Path | None:
        return None if self.args.logs is None else self.args.logs / f"{self.name}-{step}.log"

    def device(self) -> None:
        self.report.add(f"## {self.name}", "")
        code, out, took = _step([sys.executable, "-c", DEVICE], self.env, 300)
        device = out.strip().splitlines()[-1] if out.strip() else "(nothing printed)"
        gpu = code == 0 and "GPU: True" in device
        self.report.add(f"- device: {device} ({took:.1f} s)")
        if code != 0 or not (gpu or self.args.allow_no_gpu):
            self.report.add(
                f"- **failed**: the backend sees no GPU (exit {code}); the rest skipped"
            )
            self.ok = False
            return
        self.usable = True

    def tf32_effect(self) -> None:
        code, out, took = _step(
            [sys.executable, "-c", TF32_EFFECT],
            self.env,
            self.args.train_timeout,
            log=self.log("tf32"),
        )
        self.report.add(
            "", f"- TF32 against full float32, every model's outputs: exit {code}, {took:.0f} s", ""
        )
        self.report.add(*_table(out), "")
        self.ok &= code == 0

    def train(self) -> None:
        base = [sys.executable, "-m", "zoo", "--backend", self.name, "train"]
        for label, extra in [("defaults", [])] + [
            (f"--fast {f}", ["--fast", f]) for f in self.args.fast
        ]:
            run = self.workdir / f"run-{self.name}-{len(extra)}"
            argv = [*base, "--out", str(run), "--quiet", *self.args.train_args, *extra]
            code, out, took = _step(
                argv, self.env, self.args.train_timeout, log=self.log(f"train{len(extra)}")
            )
            metrics = [line for line in out.splitlines() if line.startswith("test metrics:")]
            fit = _fit_seconds(run)
            self.report.add(
                f"- `zoo train` ({label}): exit {code}, {took:.1f} s wall"
                + (f" (fit {fit:.1f} s)" if fit is not None else "")
                + f", {metrics[-1] if metrics else '-'}"
            )
            self.ok &= code == 0
        code, out, took = _step(
            [sys.executable, "-c", STARTUP],
            self.env,
            self.args.train_timeout,
            log=self.log("startup"),
        )
        self.report.add(
            f"- the default run's startup, phase by phase: exit {code}", "", *_table(out), ""
        )
        self.ok &= code == 0

    def bench(self) -> None:
        argv = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--backend", self.name]
        argv += [*self.args.bench_args, "--json", str(self.workdir / f"bench-{self.name}.json")]
        code, out, took = _step(
            argv, self.env, self.args.bench_timeout, cwd=self.workdir, log=self.log("bench")
        )
        lines = [
            line
            for line in out.splitlines()
            if line.startswith(("|", "Not measured", "Precision probe", "20"))
        ]
        self.report.add(f"### {self.name}: benchmark, exit {code}, {took:.0f} s", "", *lines, "")
        self.ok &= code == 0

    def diagnose(self) -> None:
        if not self.args.diagnose:
            return
        env = {**self.env, **({"TORCH_LOGS": "recompiles"} if self.name == "torch" else {})}
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0"]
        code, out, took = _step(
            [*argv, *self.args.diagnose], env, self.args.suite_timeout, log=self.log("diagnose")
        )
        recompiles = sum("Recompiling" in line for line in out.splitlines())
        self.report.add(
            f"- alone, {' '.join(self.args.diagnose)}: exit {code}, {took:.0f} s, "
            f"{_summary(out)}; {recompiles} recompiles logged",
            *(f"      {line}" for line in _slowest(out, 10)),
        )

    def suite(self, workers: int) -> subprocess.Popen:
        argv = [sys.executable, "-m", "pytest", "-q", "-n", str(workers), "--dist", "loadgroup"]
        argv += ["--durations=20", "-p", "no:cacheprovider", *self.args.suite_args]
        self.suite_log = self.workdir / f"suite-{self.name}.log"
        self.suite_start = time.perf_counter()
        self.suite_file = self.suite_log.open("w")
        return subprocess.Popen(
            argv, env=self.env, cwd=ROOT, stdout=self.suite_file, stderr=subprocess.STDOUT
        )

    def suite_done(self, proc: subprocess.Popen, workers: int) -> None:
        try:
            code = proc.wait(
                timeout=max(1.0, self.args.suite_timeout - (time.perf_counter() - self.suite_start))
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = 124
        took = time.perf_counter() - self.suite_start
        self.suite_file.close()
        out = self.suite_log.read_text(errors="replace")
        if self.args.logs is not None:
            shutil.copyfile(self.suite_log, self.log("suite"))
        lines = [
            f"### {self.name}: suite (`-n {workers}`), exit {code}, {took:.0f} s, {_summary(out)}",
            "",
        ]
        failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
        lines += [f"- {line[:220]}" for line in failed[:30]]
        slow = _slowest(out)
        if slow:
            lines += ["", "The slowest:", "", *(f"    {line}" for line in slow)]
        self.report.add(*lines, "")
        self.ok &= code == 0


def _fit_seconds(run: Path) -> float | None:
    import json

    try:
        return float(json.loads((run / "metrics.json").read_text())["wall_time_s"])
    except (OSError, ValueError, KeyError):
        return None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--wheels", type=Path, help="install these wheels first (offline)")
    parser.add_argument("--mnist", type=Path, help="Keras's mnist.npz, for a machine offline")
    parser.add_argument("--allow-no-gpu", action="store_true", help="check on a CPU too")
    parser.add_argument("--report", type=Path, default=Path("gpu-report.md"))
    parser.add_argument("--logs", type=Path, help="keep each step's whole output here")
    parser.add_argument(
        "--workers", type=int, help="pytest-xdist workers per backend (default: shares the cores)"
    )
    parser.add_argument("--suite-timeout", type=float, default=200)
    parser.add_argument("--bench-timeout", type=float, default=150)
    parser.add_argument("--train-timeout", type=float, default=120)
    parser.add_argument("--suite-args", default="", help="more pytest arguments, e.g. '-k golden'")
    parser.add_argument(
        "--bench-args",
        default="",
        help="benchmark.py's arguments (default: none, its device profile: 120 s on a GPU)",
    )
    parser.add_argument("--train-args", default="", help="more `zoo train` arguments")
    parser.add_argument(
        "--fast",
        nargs="*",
        default=[],
        choices=("on", "off"),
        help="also train with these --fast settings, beside the defaults",
    )
    parser.add_argument(
        "--diagnose",
        default="",
        help="tests to run alone before the suites, timed (torch: with its recompiles logged)",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=("tf32", "train", "bench", "suite"),
        help="steps to leave out",
    )
    args = parser.parse_args(argv)
    for name in ("suite_args", "bench_args", "train_args", "diagnose"):
        setattr(args, name, getattr(args, name).split())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    paths = [str(ROOT), env.get("PYTHONPATH")]
    if args.wheels:
        paths.insert(0, _install_wheels(args.wheels))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    notes = [_place_mnist(args.mnist, env)] if args.mnist else []
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    present = [b for b in args.backends if importlib.util.find_spec(b) is not None]
    report = Report(
        args.report,
        [
            "# GPU check",
            "",
            f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; backends here: {present}",
            *notes,
            "",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-check-") as work:
        backends = [Backend(b, args, env, Path(work), report) for b in present]
        for b in backends:  # phase 1: one backend at a time on the GPU
            b.device()
            if b.usable and "tf32" not in args.skip:
                b.tf32_effect()
            if b.usable and "train" not in args.skip:
                b.train()
        usable = [b for b in backends if b.usable]
        if "bench" not in args.skip:  # phase 2: the benchmarks, one at a time
            for b in usable:
                b.bench()
        if "suite" not in args.skip and usable:  # phase 3: the suites at once
            report.add("")
            for b in usable:
                b.diagnose()
            workers = args.workers or max(1, (os.cpu_count() or 2) // len(usable) - 2)
            running = [(b, b.suite(workers)) for b in usable]
            for b, proc in running:
                b.suite_done(proc, workers)
        ok = bool(backends) and all(b.ok for b in backends)
    print(report.finish(ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
