"""The guide's toy ResNet on CIFAR-10: RMSprop(1e-3), batch 64, 1 epoch on the first
1000 training images with validation_split 0.2 (as the guide, to keep it short);
``--samples 0`` trains on all 50,000.

    python scripts/train_toy_resnet.py --backend jax [--samples 0] [--epochs 10]

CIFAR-10 comes through Keras's loader (cached in ~/.keras/datasets); offline
without that cache it stops with a message saying where to put the file.
"""

import argparse
import sys

from zoo.cli import add_backend_argument, use_backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_argument(parser)
    parser.add_argument("--samples", type=int, default=1000, help="training images (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"backend: {use_backend(args.backend)}")  # before anything imports Keras
    import keras

    import zoo
    from zoo import datasets

    try:
        (x_train, y_train), (x_test, y_test) = datasets.cifar10()
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.samples:
        x_train, y_train = x_train[: args.samples], y_train[: args.samples]
    keras.utils.set_random_seed(args.seed)
    model = zoo.create("toy_resnet")
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["acc"],
    )
    model.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.2
    )
    loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print(f"Test loss: {loss:.4f}  Test accuracy: {acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
