"""The functional-API guide's MNIST run: mnist_mlp, RMSprop, batch 64, 2 epochs,
validation_split 0.2, then the test evaluation (the guide prints 0.9609).

    python scripts/train_mnist_mlp.py --backend jax
    python scripts/train_mnist_mlp.py --dataset digits --epochs 30   # offline
"""

import argparse
import sys

from zoo.cli import add_backend_argument, use_backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_argument(parser)
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--epochs", type=int, default=None, help="default: 2 (mnist), 30 (digits)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    print(f"backend: {use_backend(args.backend)}")  # before anything imports Keras
    from zoo.training import train  # after the backend is chosen

    metrics = train(
        "mnist_mlp",
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
    )
    print("Test loss:", metrics["test_loss"])
    print("Test accuracy:", metrics["test_accuracy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
