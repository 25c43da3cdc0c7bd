"""The ``zoo`` command line: ``python -m zoo {list,describe,summary} ...``.

``--backend`` sets ``KERAS_BACKEND`` before Keras is first imported, so it
really takes effect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="Keras 3 model zoo.")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else Keras's default)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. '*mlp*'")
    p = commands.add_parser("describe", help="show a model's registry entry as JSON")
    p.add_argument("name")
    p = commands.add_parser("summary", help="build a model and print its Keras summary")
    p.add_argument("name")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise SystemExit("zoo: --backend must be chosen before Keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend

    import zoo  # imported only now, after the backend is set

    try:
        if args.command == "list":
            for name in zoo.list_models(args.pattern):
                print(f"{name:24s} {zoo.describe(name).summary}")
        elif args.command == "describe":
            print(json.dumps(zoo.describe(args.name).as_dict(), indent=2, default=str))
        elif args.command == "summary":
            import keras

            model = zoo.create(args.name)
            model.summary()
            print(f"backend: {keras.backend.backend()}, parameters: {model.count_params():,}")
    except ValueError as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    return 0
