"""``zoo train ... --distribute data --processes N``: N local worker processes, one run.

The launcher starts N copies of the same ``zoo train`` command, each with the
environment its backend's engine reads to find the others (over localhost):

- torch: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``LOCAL_WORLD_SIZE`` (what ``torchrun`` sets; ``torch.distributed``'s ``env://``);
- jax: ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator), ``..._NUM_PROCESSES``,
  ``..._PROCESS_ID`` (what ``keras.distribution.initialize()`` reads);
- tensorflow: ``TF_CONFIG`` (``tf.distribute.MultiWorkerMirroredStrategy``'s cluster).

Process 0 (the chief, the only one that writes the run directory) prints to this
terminal; the others' output is kept and shown only if they fail. When any worker
fails or dies, the launcher stops the others and exits with one line saying which
worker failed and how; the same command run again resumes from the last complete
checkpoint. On a cluster, the cluster's own launcher (``torchrun``, ``srun``, a
Kubernetes job) starts the same workers with the same variables: see
``docs/distribute.md``.

Why not ``torchrun`` itself: it is torch's only; the launcher is about 100 lines and
starts the workers of all three backends the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

__all__ = [
    "WORKER_VARIABLES",
    "device_env",
    "devices_note",
    "gpu_count",
    "launch",
    "process_index_from_env",
    "tf_workers",
    "worker_env",
]

#: How long the workers have to stop after SIGTERM before they get SIGKILL.
STOP_GRACE_S = 5.0
#: What a launcher (this one, torchrun, a wrapper around srun) sets in each worker.
WORKER_VARIABLES = ("RANK", "WORLD_SIZE", "KERAS_DISTRIBUTION_PROCESS_ID", "TF_CONFIG")


def _tf_config() -> dict:
    """``TF_CONFIG`` parsed (``{}`` when unset or not a JSON object)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return {}
    return config if isinstance(config, dict) else {}


def tf_workers() -> tuple[int, int]:
    """``(workers, this worker's index)`` from ``TF_CONFIG`` (``(1, 0)`` without it)."""
    config = _tf_config()
    try:
        return len(config["cluster"]["worker"]), int(config["task"]["index"])
    except (KeyError, TypeError, ValueError):
        return 1, 0


def process_index_from_env() -> int:
    """This process's index as its launcher set it (torchrun's ``RANK``, Keras's
    ``KERAS_DISTRIBUTION_PROCESS_ID``, ``TF_CONFIG``'s task index); 0 when none is set.
    Readable before the backend starts (the CLI prints only from process 0)."""
    for name in ("RANK", "KERAS_DISTRIBUTION_PROCESS_ID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    try:
        return int(_tf_config()["task"]["index"])
    except (KeyError, TypeError, ValueError):
        return 0


def _free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on localhost now (the OS picks them)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def worker_env(backend: str, rank: int, processes: int, ports: list[int]) -> dict[str, str]:
    """The variables worker ``rank`` of ``processes`` needs on ``backend`` (``ports``:
    one free port per process; the first is the coordinator's)."""
    if backend == "torch":
        return {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(ports[0]),
            "RANK": str(rank),
            "WORLD_SIZE": str(processes),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(processes),
        }
    if backend == "jax":
        return {
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{ports[0]}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes),
            "KERAS_DISTRIBUTION_PROCESS_ID": str(rank),
        }
    if backend == "tensorflow":
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports[:processes]]}
        task = {"type": "worker", "index": rank}
        return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
    raise ValueError(f"backend must be one of ['tensorflow', 'jax', 'torch'], got {backend!r}")


def gpu_count() -> int:
    """The NVIDIA GPUs this process may use, read without starting a backend:
    ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``'s lines (0 without it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines())


def device_env(backend: str, rank: int, processes: int, gpus: int) -> dict[str, str]:
    """The devices worker ``rank`` of ``processes`` trains on, with ``gpus`` GPUs here:
    none (CPUs) without GPUs; one GPU each when ``processes <= gpus`` (torch picks it by
    ``LOCAL_RANK``; JAX and TensorFlow see only their own); CPUs for all when there are
    fewer GPUs than processes, since two processes on one GPU would each ask for a
    device of their own (torch: ``invalid device ordinal``)."""
    if gpus == 0:
        return {}
    if processes > gpus:
        return {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    if backend == "torch":
        return {}  # every GPU visible; LOCAL_RANK (worker_env) picks this one's
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
    return {"CUDA_VISIBLE_DEVICES": ids[rank]}


def devices_note(processes: int, gpus: int) -> str | None:
    """The one line the launcher prints when the workers do not get a GPU each."""
    if 0 < gpus < processes:
        return (
            f"zoo: --processes {processes} is more than the {gpus} GPU(s) here: the workers "
            f"train on CPUs (gloo); pass --processes {gpus} or fewer for one GPU each"
        )
    return None


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
    """Linux: the worker gets SIGKILL if the launcher dies, so none is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_line(log) -> str:
    """The last line a worker wrote that says something (its error, in the CLI's form)."""
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    said = [line for line in lines if line]
    errors = [line for line in said if line.startswith("zoo:")]
    return (errors or said or [""])[-1][:300]


def _stop(workers) -> None:
    for w in workers:
        if w.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                w.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        try:
            w.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def launch(worker_args: list[str], processes: int, backend: str) -> int:
    """Runs ``python -m zoo --backend BACKEND *worker_args`` as ``processes`` workers;
    returns 0 when all of them succeed, else 1 (130 on Ctrl-C), having stopped the rest."""
    ports = _free_ports(processes)
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    gpus = gpu_count()
    note = devices_note(processes, gpus)
    if note:
        print(note, file=sys.stderr)
    with contextlib.ExitStack() as stack:
        # process 0 prints here; the others' output is kept to report their failure
        logs = [None] + [stack.enter_context(tempfile.TemporaryFile()) for _ in ports[1:]]
        workers: list[subprocess.Popen] = []
        try:
            for rank, log in enumerate(logs):
                env = {**os.environ, "KERAS_BACKEND": backend}
                env.update(worker_env(backend, rank, processes, ports))
                env.update(device_env(backend, rank, processes, gpus))
                env.setdefault("OMP_NUM_THREADS", threads)  # as torchrun: no oversubscribed cores
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "zoo", "--backend", backend, *worker_args],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT if log else None,
                        preexec_fn=_die_with_parent,
                    )
                )
            pids = ", ".join(str(w.pid) for w in workers)
            print(f"zoo: started {processes} {backend} workers (pids {pids})", file=sys.stderr)
            return _watch(workers, logs)
        except KeyboardInterrupt:
            _stop(workers)
            print(
                "\nzoo: interrupted; stopped the workers. Run the same command again to resume "
                "from the last complete checkpoint",
                file=sys.stderr,
            )
            return 130
        finally:
            _stop(workers)


def _watch(workers, logs) -> int:
    """Waits for the workers: 0 when all succeed; at the first failure, stops the others
    and says which failed and how (1)."""
    while True:
        codes = [w.poll() for w in workers]
        failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            rank = failed[0]
            _stop(workers)
            said = _last_line(logs[rank]) if logs[rank] else ""
            print(
                f"zoo: worker {rank} of {len(workers)} failed ({_how(codes[rank])})"
                + (f": {said}" if said else "")
                + "; stopped the other workers. Run the same command again to resume from "
                "the last complete checkpoint",
                file=sys.stderr,
            )
            return 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.05)
