"""Reference numpy layers in the "Deep Learning from Scratch" style.

Every layer follows the protocol of ``gradcheck``: ``forward(x[, train_flg])``,
``backward(dout) -> dx``, parameter ``p`` with its gradient in ``dp``. Layers
that behave the same in train and eval mode take no ``train_flg``.
"""

from layers.activations import Relu, Sigmoid, Tanh
from layers.affine import Affine
from layers.batchnorm import BatchNormalization
from layers.conv import Convolution
from layers.dropout import Dropout
from layers.loss import SoftmaxWithLoss
from layers.normalization import GroupNorm, LayerNorm, SpatialBatchNormalization
from layers.pooling import Pooling
from layers.sequential import Sequential

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
