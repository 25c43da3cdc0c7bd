"""The tutorial's linear regression: study hours -> score, SGD(0.01), MSE, 300 epochs;
prints the fitted line and the predicted score for 9.5 hours.

    python scripts/linear_regression.py --backend jax [--epochs 300]
"""

import argparse
import sys

from zoo.cli import add_backend_argument, use_backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_argument(parser)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"backend: {use_backend(args.backend)}")  # before anything imports Keras
    import keras
    import numpy as np

    import zoo
    from zoo import datasets

    x, y = datasets.study_hours()
    keras.utils.set_random_seed(args.seed)
    model = zoo.create("linear_regression")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(x, y, epochs=args.epochs, verbose=0)
    weight, bias = (float(np.ravel(keras.ops.convert_to_numpy(v))[0]) for v in model.weights)
    prediction = float(model.predict(np.array([[9.5]], "float32"), verbose=0)[0, 0])
    loss = float(model.evaluate(x, y, verbose=0))
    print(f"fitted line: score = {weight:.3f} * hours + {bias:.3f}  (MSE {loss:.3f})")
    print(f"predicted score for 9.5 hours: {prediction:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
