"""Reference numpy layers in the "Deep Learning from Scratch" style.

Every layer follows the protocol of ``gradcheck``: ``forward(x, train_flg)``,
``backward(dout) -> dx``, parameter ``p`` with its gradient in ``dp``.
"""

from layers.batchnorm import BatchNormalization

__all__ = ["BatchNormalization"]
