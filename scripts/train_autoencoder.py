"""Trains the guide's convolutional autoencoder to reconstruct digits, then shows
that the encoder taken out of it shares the trained weights.

    python scripts/train_autoencoder.py --backend jax [--nested] [--dataset mnist]
"""

import argparse
import sys

from zoo.cli import add_backend_argument, use_backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_argument(parser)
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    parser.add_argument("--nested", action="store_true", help="encoder/decoder as nested models")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    print(f"backend: {use_backend(args.backend)}")  # before anything imports Keras
    from pathlib import Path

    import keras

    import zoo
    from zoo.training import default_run_dir, load_data, train

    name = "conv_autoencoder_nested" if args.nested else "conv_autoencoder"
    out = args.out or default_run_dir(name, args.dataset, args.seed)
    metrics = train(name, dataset=args.dataset, epochs=args.epochs, seed=args.seed, out=out)
    print(f"test reconstruction MSE: {metrics['test_loss']:.4f}")
    autoencoder = keras.saving.load_model(Path(out) / "model.keras")
    encoder = zoo.extract_encoder(autoencoder)
    _, (x_test, _) = load_data(name, args.dataset)
    codes = encoder.predict(x_test[:5], verbose=0)
    print(f"encoder output for 5 test images: {codes.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
