"""Two small networks on real images, checked end to end with ``check_layer``.

    python examples/digits_networks.py          # prints both reports, train and eval

The images are scikit-learn's handwritten digits (``load_digits``: 1,797 8x8
grey-level images, shipped inside the package -- nothing is downloaded).
Both networks end in ``SoftmaxWithLoss`` holding the batch's labels, so the
check differentiates the loss a training step would differentiate, with
respect to the images and to every parameter of every layer at once.

* ``make_mlp``: Affine(64->16), BatchNormalization, Relu, Affine(16->10),
  SoftmaxWithLoss on a batch of 16 flattened images.
* ``make_convnet``: Convolution(4 filters 3x3, pad 1), BatchNormalization (the
  seed's, flattened over C*H*W), Relu, Pooling(max 2x2, stride 2),
  Affine(64->10), SoftmaxWithLoss on a batch of 8 images (N, 1, 8, 8).

Eval mode is checked after three train-mode steps on other batches have set
the running statistics.
"""

import numpy as np

# the reference layers (``from layers import ...`` too, unless a layers.py of your own
# shadows that name)
from gradcheck.layers import (Affine, BatchNormalization, Convolution, Pooling, Relu,
                              Sequential, SoftmaxWithLoss)


def load_batch(n, seed=0, offset=0):
    """``n`` digits scaled to [0, 1] and their labels (needs scikit-learn).

    Returns
    -------
    images : ndarray of float64, shape (n, 1, 8, 8)
    labels : ndarray of int, shape (n,)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = np.random.default_rng(seed).permutation(len(digits.target))[offset:offset + n]
    return digits.images[idx][:, None] / 16.0, digits.target[idx]


def _warm_up(net, shape, seed):
    """Three train-mode forward passes on other batches: realistic running statistics."""
    for k in range(3):
        images, _ = load_batch(shape[0], seed, offset=100 + 50 * k)
        net.forward(images.reshape(shape), train_flg=True)


def make_mlp(train_flg=True, n=16, hidden=16, seed=0):
    """``(net, x)``: the MLP and a batch of flattened digits of shape (n, 64)."""
    rng = np.random.default_rng(seed)
    images, labels = load_batch(n, seed)
    x = images.reshape(n, 64)
    net = Sequential(
        Affine(rng.normal(0, 0.3, (64, hidden)), rng.normal(0, 0.1, hidden)),
        BatchNormalization(rng.uniform(0.5, 1.5, hidden), rng.normal(0, 0.1, hidden)),
        Relu(),
        Affine(rng.normal(0, 0.3, (hidden, 10)), np.zeros(10)),
        SoftmaxWithLoss(labels),
    )
    if not train_flg:
        _warm_up(net, x.shape, seed)
    return net, x


def make_convnet(train_flg=True, n=8, filters=4, seed=0):
    """``(net, x)``: the ConvNet and a batch of digits of shape (n, 1, 8, 8)."""
    rng = np.random.default_rng(seed)
    x, labels = load_batch(n, seed)
    D = filters * 8 * 8
    net = Sequential(
        Convolution(rng.normal(0, 0.5, (filters, 1, 3, 3)), rng.normal(0, 0.1, filters), pad=1),
        BatchNormalization(rng.uniform(0.5, 1.5, D), rng.normal(0, 0.1, D)),
        Relu(),
        Pooling(2, 2, stride=2, mode="max"),
        Affine(rng.normal(0, 0.3, (filters * 4 * 4, 10)), np.zeros(10)),
        SoftmaxWithLoss(labels),
    )
    if not train_flg:
        _warm_up(net, x.shape, seed)
    return net, x


if __name__ == "__main__":
    from gradcheck import check_layer

    for make in (make_mlp, make_convnet):
        for train_flg in (True, False):
            net, x = make(train_flg)
            print(check_layer(net, x, train_flg=train_flg), end="\n\n")
