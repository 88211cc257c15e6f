"""Reference numpy layers in the "Deep Learning from Scratch" style.

Every layer follows the protocol of ``gradcheck``: ``forward(x[, train_flg])``,
``backward(dout) -> dx``, parameter ``p`` with its gradient in ``dp``. Layers
that behave the same in train and eval mode take no ``train_flg``.
"""

from .activations import Relu, Sigmoid, Tanh
from .affine import Affine
from .batchnorm import BatchNormalization
from .conv import Convolution
from .dropout import Dropout
from .loss import SoftmaxWithLoss
from .normalization import GroupNorm, LayerNorm, SpatialBatchNormalization
from .pooling import Pooling
from .sequential import Sequential

__all__ = [
    "Affine",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "GroupNorm",
    "LayerNorm",
    "Pooling",
    "Relu",
    "Sequential",
    "Sigmoid",
    "SoftmaxWithLoss",
    "SpatialBatchNormalization",
    "Tanh",
]
