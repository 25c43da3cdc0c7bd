"""Model families: importing this package registers every named variant."""

from zoo.models import (  # noqa: F401  (each module registers its variants)
    autoencoder,
    custom,
    ensemble,
    mlp,
    multi_input,
    recurrent,
    regression,
    resnet,
    text,
    ticket_router,
    vgg,
)
