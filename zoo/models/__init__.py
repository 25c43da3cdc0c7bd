"""Model families: importing this package registers every named variant."""

from zoo.models import mlp, regression  # noqa: F401  (registers the variants)
