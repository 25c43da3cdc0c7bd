"""Custom layers, registered as serializable under the package name "zoo", so that
``.keras`` files containing them load with no ``custom_objects``."""

from zoo.layers.custom import CustomDense, CustomRNN, CustomRNNCell, RNNWithFunctionalHead
from zoo.layers.merge import WeightedAverage

__all__ = ["CustomDense", "CustomRNN", "CustomRNNCell", "RNNWithFunctionalHead", "WeightedAverage"]
