"""PyTorch: the window, the compiled train step, the DDP step, the forward pass for
``predict``, and (``keras_patches``) every use of Keras's and torch's internals."""
