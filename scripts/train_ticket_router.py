"""Trains the guide's ticket router on synthetic tickets (zoo.datasets.tickets,
whose priority and department follow a documented rule), with the guide's
per-output losses and loss weights.

    python scripts/train_ticket_router.py --backend jax
"""

import argparse
import sys

from zoo.cli import add_backend_argument, use_backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_argument(parser)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    print(f"backend: {use_backend(args.backend)}")  # before anything imports Keras
    from zoo.training import train

    metrics = train(
        "ticket_router", dataset="tickets", epochs=args.epochs, seed=args.seed, out=args.out
    )
    for key in sorted(metrics):
        if key.startswith("test_"):
            print(f"{key}: {metrics[key]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
