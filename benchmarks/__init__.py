"""Hand-written reference implementations for ``scripts/benchmark.py`` (not part of
the ``zoo`` package): the guide's MLP and toy ResNet written directly in PyTorch,
JAX and TensorFlow, and the guide's own ``compile`` + ``fit`` code."""
