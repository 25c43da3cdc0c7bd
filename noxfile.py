"""The test matrix: one virtualenv per Keras backend, plus lint.

Usage::

    nox                                          # every backend's tests, then lint
    nox -s "tests(backend='jax')" -- -k golden   # one backend; args after -- go to pytest
    nox -s golden                                # regenerate tests/golden (under JAX)
    nox -s docs                                  # regenerate docs/models (needs graphviz)
    nox -s bench                                 # zoo vs guide code vs native, per backend
    nox -s gpu                                   # the suite on an accelerator (JAX, PyTorch)
    nox -s keras_latest                          # the suite (torch) with the newest Keras
    nox -s keras_nightly                         # the suite (torch) with keras-nightly
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = True
# uv makes the venvs and installs into them where it is installed (.ci/run installs it),
# else virtualenv and pip. Measured here (2026-11-28, warm caches): TensorFlow's install
# 47 s with pip -> 9 s with uv, torch's 38 s -> 8 s.
nox.options.default_venv_backend = "uv|virtualenv"

PROJECT = "keras-model-zoo"

# pip's settings -> uv's variables (uv reads none of pip's configuration)
UV_FROM_PIP = {
    "find-links": ("UV_FIND_LINKS", ","),
    "index-url": ("UV_INDEX_URL", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
}


def _uv_reads_pips_settings() -> None:
    """Gives uv the settings pip reads from pip.conf and PIP_* variables (on this machine
    they name a local CPU torch wheel, local indexes and a constraints file), so that the
    two install the same things. pip picks the best version over all its indexes; so does
    uv under ``unsafe-best-match`` (its default takes the first index that has the
    package). Variables already set win."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    found = {}
    for line in listed.splitlines():  # e.g. global.find-links='/opt/wheels'
        where, _, value = line.partition("=")
        scope, _, key = where.rpartition(".")
        if key in UV_FROM_PIP and value:
            # pip's precedence: its variables (":env:"), then [install], then [global]
            rank = {":env:": 0, "install": 1}.get(scope, 2)
            found.setdefault(key, []).append((rank, value.strip("'\"")))
    for key, values in found.items():
        variable, separator = UV_FROM_PIP[key]
        os.environ.setdefault(variable, separator.join(min(values)[1].split()))
    os.environ.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")


_uv_reads_pips_settings()

# What each backend's venv installs, in order: the backend, the test tools and what
# `zoo export` needs on it. torch comes first and pinned, as a CPU wheel; the
# package's `torch` extra is then already satisfied.
BACKENDS = {
    "tensorflow": [".[tensorflow-cpu,test,export-tensorflow]"],
    "jax": [".[jax,test,export-jax]"],
    "torch": ["torch==2.13.0", ".[torch,test,export-torch]"],
}

CHECK_BACKEND = """
import sys, keras
got = keras.backend.backend()
print(f"keras {keras.__version__} running backend {got!r}")
sys.exit(0 if got == sys.argv[1] else f"asked for {sys.argv[1]!r}, Keras runs {got!r}")
"""


def _install(session, *requirements):
    if session.venv_backend == "uv":
        # uv compiles no bytecode unless asked; on a reused venv (`nox -r`) it keeps an
        # installed package unless told, and this project's own must be the checkout's
        session.install("--reinstall-package", PROJECT, *requirements)
    else:
        # --no-compile: pip byte-compiles every file of TensorFlow, JAX or torch, most of
        # which no test imports (measured here: the JAX venv's install 116 s -> 57 s);
        # Python compiles what is imported, once, on first import
        session.install("--no-compile", *requirements)


def _install_backend(session, backend):
    for requirement in BACKENDS[backend]:
        _install(session, requirement)
    # ... which needs Python free to write what it compiles (this machine's environment
    # sets PYTHONDONTWRITEBYTECODE, which would make every process compile every import)
    session.env["PYTHONDONTWRITEBYTECODE"] = None
    session.env["KERAS_BACKEND"] = backend
    session.run("python", "-c", CHECK_BACKEND, backend)


@nox.session
@nox.parametrize("backend", list(BACKENDS))
def tests(session, backend):
    """Runs the test suite under one backend."""
    _install_backend(session, backend)
    # the session installs the export and plot extras: their tests fail, not skip, if absent
    session.env["ZOO_REQUIRE_EXTRAS"] = "1"
    # Compiled programs are shared between the xdist workers and the processes the tests
    # start, in a cache inside the session's folder: a new venv (CI, plain `nox`) starts
    # it empty, as a fresh machine would; `nox -r` keeps it
    cache = Path(session.create_tmp()) / "compile-cache"
    if backend == "jax":
        # JAX's persistent compilation cache, for every program however quick to compile
        session.env["JAX_COMPILATION_CACHE_DIR"] = f"{cache}/jax"
        session.env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        session.env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    if backend == "torch":
        session.env["TORCHINDUCTOR_CACHE_DIR"] = f"{cache}/inductor"
        # inductor compiles C++ kernels with a pool of its own: one thread per xdist worker
        # keeps the two workers from oversubscribing the cores
        session.env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
        # ... and one OpenMP thread each for torch's own ops: two workers of two spinning
        # OpenMP threads each on two cores slowed torch's steps about tenfold (measured
        # here, 2026-11-28: the ticket_router and MNIST training tests 142 s and 141 s in
        # the suite against 14 s and 10 s alone, 11 s and 9 s with this; the session
        # 722 s -> 447 s). TensorFlow's and JAX's sessions got slower with one thread each
        # (350 s -> 393 s; 464 s -> 595 s with --xla_cpu_multi_thread_eigen=false), so only
        # torch's gets it. Processes the tests start inherit it, as torchrun's
        # workers get OMP_NUM_THREADS=1.
        session.env["OMP_NUM_THREADS"] = "1"
    # pytest-xdist: one worker per core (measured here on 2 cores: JAX's harness, golden
    # and seed-model tests 346 s -> 255 s); "loadgroup" keeps each xdist_group on one
    # worker: a model's harness checks (tests/test_models.py), the multi-process runs
    # (tests/test_distribute.py). It needs pytest < 9.2 (pyproject.toml's test extra)
    session.run("pytest", "-n", "auto", "--dist", "loadgroup", "--durations=20", *session.posargs)


# On an accelerator machine: JAX's CUDA wheels, and PyTorch's PyPI wheel (which is the
# CUDA build on Linux x86-64; this repository's CPU machines pin a local CPU wheel).
GPU_BACKENDS = {
    "jax": ["jax[cuda12]", ".[jax,test,export-jax]"],
    "torch": ["torch==2.13.0", ".[torch,test,export-torch]"],
}

CHECK_GPU = """
import sys, keras
backend = keras.backend.backend()
if backend == "jax":
    import jax
    gpus = [str(d) for d in jax.devices() if d.platform == "gpu"]
else:
    import torch
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(f"keras {keras.__version__} backend {backend!r} sees GPU(s): {gpus}")
sys.exit(0 if gpus else f"backend {backend!r} sees no GPU: run this session on a GPU machine")
"""


@nox.session
@nox.parametrize("backend", list(GPU_BACKENDS))
def gpu(session, backend):
    """Runs the suite on an accelerator machine, after checking that the backend sees a
    GPU (it fails, not skips, when none is there). Results go in docs/gpu.md."""
    for requirement in GPU_BACKENDS[backend]:
        session.install(requirement)
    session.env["KERAS_BACKEND"] = backend
    session.run("python", "-c", CHECK_BACKEND, backend)
    session.run("python", "-c", CHECK_GPU)
    session.run("pytest", "--durations=20", *session.posargs)


#: The keras-nightly that keras_nightly tests against (it changes daily).
KERAS_NIGHTLY = "keras-nightly==3.16.0.dev2026102704"


def _other_keras(session, keras_requirement):
    """The torch test venv with ``keras_requirement`` in place of the Keras that
    pyproject.toml allows (keras and keras-nightly both install the ``keras`` package:
    one is removed, then the other added)."""
    _install(session, "torch==2.13.0", ".[torch,test,export-torch]")
    session.run("python", "-m", "pip", "uninstall", "--yes", "keras", "keras-nightly")
    _install(session, "--no-deps", "--force-reinstall", keras_requirement)
    session.env["PYTHONDONTWRITEBYTECODE"] = None
    session.env["KERAS_BACKEND"] = "torch"
    session.env["OMP_NUM_THREADS"] = "1"
    session.run("python", "-c", CHECK_BACKEND, "torch")
    args = session.posargs or ["-n", "auto", "--dist", "loadgroup"]
    session.run("python", "-m", "pytest", *args)


@nox.session(venv_backend="virtualenv")  # it swaps Keras with the venv's pip
def keras_latest(session):
    """The suite under torch with the newest Keras release on PyPI, whatever
    pyproject.toml's bound (the tested minor). Not in the default matrix."""
    _other_keras(session, "keras")


@nox.session(venv_backend="virtualenv")
def keras_nightly(session):
    """The suite under torch with keras-nightly, whose ``fit`` has Keras's own
    DataParallel on torch: ``zoo.distribute`` detects it and uses it instead of the
    zoo's DDP step, and the patches of ``zoo.performance.keras_patches`` whose targets
    moved are skipped (docs/performance.md). Not in the default matrix (the nightly
    moves every day). ``nox -s keras_nightly -- tests/test_distribute.py`` runs the
    distribution tests alone."""
    _other_keras(session, KERAS_NIGHTLY)


@nox.session
def lint(session):
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session):
    """Regenerates docs/models/*.md, their diagrams and docs/index.md (needs graphviz)."""
    _install_backend(session, "jax")
    session.run("python", "scripts/build_docs.py", *session.posargs)


@nox.session
def golden(session):
    """Regenerates tests/golden; args after -- name the models (default: all)."""
    _install_backend(session, "jax")
    session.run("python", "scripts/make_golden.py", *session.posargs)


@nox.session
@nox.parametrize("backend", list(BACKENDS))
def bench(session, backend):
    """Benchmarks the zoo against the guide's code and native loops (scripts/benchmark.py):
    the steady state, then end to end with the defaults as a first-time user (a fresh
    compile-cost cache; only the one given with ``-- --end-to-end``); prints the tables
    and ratios, and updates docs/benchmarks.md and docs/benchmarks/."""
    _install_backend(session, backend)
    e2e = "--end-to-end" in session.posargs
    runs = [([], "")] if e2e else [([], ""), (["--end-to-end"], "-e2e")]
    for extra, suffix in runs:
        env = {}
        if extra or e2e:  # a first-time user: nothing cached
            env["ZOO_CACHE_DIR"] = tempfile.mkdtemp(prefix="zoo-bench-cache-")
        session.run(
            "python",
            "scripts/benchmark.py",
            "--backend",
            backend,
            *extra,
            "--json",
            f"docs/benchmarks/{backend}{'-e2e' if e2e else suffix}.json",
            "--docs",
            "docs/benchmarks.md",
            *session.posargs,
            env=env,
        )
