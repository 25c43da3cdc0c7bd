"""Writes the cross-backend golden files: for every registered model, a ``.keras``
file plus fixed inputs and the outputs they gave, under ``tests/golden/``.

Run it again whenever a model changes (any backend works; the manifest records
which one made the files):

    KERAS_BACKEND=jax python scripts/make_golden.py            # all models
    KERAS_BACKEND=jax python scripts/make_golden.py mnist_mlp  # some models
    nox -s golden                                              # the same, in a venv

``tests/test_golden.py`` then loads each set on every backend and checks the
outputs within 1e-5.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras

import zoo
from zoo.testing import write_golden, write_manifest

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to regenerate (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="golden folder")
    args = parser.parse_args(argv)

    registered = zoo.list_models()
    unknown = [n for n in args.names if n not in registered]
    if unknown:
        parser.error(f"unknown model name(s) {unknown}; registered: {registered}")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "MANIFEST.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if args.names and old.get("backend", keras.backend.backend()) != keras.backend.backend():
        parser.error(
            f"the golden set was made under {old['backend']!r}; regenerate all models "
            f"under one backend (KERAS_BACKEND={old['backend']}) or without names"
        )
    entries = {n: e for n, e in old.get("models", {}).items() if n in registered}
    for name in args.names or registered:
        entries[name] = write_golden(name, args.out)
        print(f"wrote {name}: {entries[name]['params']:,} params", flush=True)
    if not args.names:  # a full run also removes the files of unregistered models
        for path in args.out.glob("*"):
            if path.suffix in (".keras", ".npz") and path.stem not in registered:
                path.unlink()
                print(f"removed stale {path.name}")
    write_manifest(args.out, entries)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(
        f"{len(entries)} golden sets in {args.out} ({size / 1e6:.2f} MB), "
        f"backend {keras.backend.backend()}, keras {keras.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
