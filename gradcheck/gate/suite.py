"""Registry of built-in layer configurations.

One :class:`LayerSpec` per layer configuration: how to build the layer and a
matching input for a given shape, which shapes the built-in suite checks and in
which modes. The CLI's built-in suite, the tests and the benchmarks all read
this table, so adding a layer here adds it everywhere.
"""

from dataclasses import dataclass, field
from typing import Callable

from functools import partial

import numpy as np

# the reference layers, whatever the import name ``layers`` resolves to (a user's own
# layers.py next to their tests must not replace them)
from gradcheck.layers import (Affine, BatchNormalization, Convolution, Dropout, GroupNorm,
                              LayerNorm, Pooling, Relu, Sequential, Sigmoid, SoftmaxWithLoss,
                              SpatialBatchNormalization, Tanh)

__all__ = ["LayerSpec", "SPECS", "Case", "builtin_cases", "get_spec"]


@dataclass(frozen=True)
class LayerSpec:
    """How to build one built-in layer configuration.

    Parameters
    ----------
    name : str
        Unique label, e.g. ``"BatchNormalization-2d"``.
    make : callable
        ``make(shape, rng, train_flg) -> (layer, x)``: a fresh layer whose
        parameters fit an input of ``shape`` and an input ``x`` (float64,
        ``shape``) drawn from ``rng`` (a ``numpy.random.Generator``).
    shapes : tuple of tuple of int
        Input shapes the built-in suite checks.
    modes : tuple of bool
        Values of ``train_flg`` the layer supports (``True`` = train).
    options : dict
        Keyword arguments of ``check_layer`` this configuration needs.
    train_options : dict
        Those it needs in train mode only, e.g. ``expect_zero`` for a bias whose
        gradient is zero by the network's structure in train mode (before a
        train-mode batch normalisation; in eval mode it is not).
    """

    name: str
    make: Callable
    shapes: tuple
    modes: tuple = (True, False)
    notes: str = ""
    options: dict = field(default_factory=dict)
    train_options: dict = field(default_factory=dict)

    def options_for(self, train_flg):
        """The ``check_layer`` options of this configuration in one mode."""
        return {**self.options, **(self.train_options if train_flg else {})}


@dataclass(frozen=True)
class Case:
    """One check of the built-in suite: a spec, an input shape and a mode."""

    spec: LayerSpec
    shape: tuple
    train_flg: bool
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def label(self):
        mode = "train" if self.train_flg else "eval"
        return f"{self.spec.name} {tuple(self.shape)} {mode}"

    def build(self):
        """Return a fresh ``(layer, x)`` for this case (deterministic in ``seed``)."""
        rng = np.random.default_rng(self.seed)
        return self.spec.make(tuple(self.shape), rng, self.train_flg)


def _feature_count(shape):
    return int(np.prod(shape[1:]))


def make_batchnorm(shape, rng, train_flg=True):
    """A seed-style :class:`BatchNormalization` for ``shape`` and an input.

    ``gamma`` and ``beta`` are random (not ones and zeros, which would hide
    bugs that confuse them); eval mode gets positive, non-trivial running
    statistics.
    """
    D = _feature_count(shape)
    gamma = rng.uniform(0.5, 1.5, D)
    beta = rng.normal(0.0, 0.5, D)
    running_mean = rng.normal(0.0, 0.5, D) if not train_flg else None
    running_var = rng.uniform(0.5, 2.0, D) if not train_flg else None
    layer = BatchNormalization(gamma, beta, 0.9, running_mean, running_var)
    x = rng.normal(0.3, 1.2, shape)
    return layer, x


# -- input samplers ---------------------------------------------------------


def _away_from_zero(rng, shape, margin=0.05, high=2.0):
    """Normal-ish values with ``|x| >= margin`` (away from the ReLU kink)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(margin, high, size=shape)


def _distinct(rng, shape, gap=0.1):
    """Values whose pairwise distances are at least ``gap / 2`` (no max-pool ties)."""
    size = int(np.prod(shape))
    grid = rng.permutation(size) + rng.uniform(0.0, 0.5, size)
    return ((grid - size / 2) * gap).reshape(shape)


# -- factories: make(shape, rng, train_flg) -> (layer, x) ---------------------


def make_affine(shape, rng, train_flg=True, out_features=3):
    """:class:`Affine` with ``W`` of shape ``(prod(shape[1:]), out_features)``."""
    D = _feature_count(shape)
    layer = Affine(rng.normal(0.0, 1.0 / np.sqrt(D), (D, out_features)),
                   rng.normal(0.0, 0.5, out_features))
    return layer, rng.normal(0.0, 1.0, shape)


def make_activation(cls, shape, rng, train_flg=True):
    """An activation layer ``cls()``; ReLU inputs stay 0.05 away from the kink."""
    x = _away_from_zero(rng, shape) if cls is Relu else rng.normal(0.0, 1.5, shape)
    return cls(), x


def make_softmax_loss(shape, rng, train_flg=True, onehot=False):
    """:class:`SoftmaxWithLoss` with labels from ``rng`` (indices or one-hot rows)."""
    N, C = shape
    t = rng.integers(0, C, N)
    if onehot:
        t = np.eye(C)[t]
    return SoftmaxWithLoss(t), rng.normal(0.0, 2.0, shape)


def make_dropout(shape, rng, train_flg=True, scale=True):
    """:class:`Dropout` with ratio 0.3 and a generator seeded from ``rng``."""
    layer = Dropout(0.3, seed=int(rng.integers(2**31)), scale=scale)
    return layer, rng.normal(0.0, 1.0, shape)


def make_convolution(shape, rng, train_flg=True, filters=3, kernel=3, stride=1, pad=0):
    """:class:`Convolution` with ``filters`` kernels of ``kernel x kernel``."""
    C = shape[1]
    fan_in = C * kernel * kernel
    W = rng.normal(0.0, 1.0 / np.sqrt(fan_in), (filters, C, kernel, kernel))
    layer = Convolution(W, rng.normal(0.0, 0.5, filters), stride=stride, pad=pad)
    return layer, rng.normal(0.0, 1.0, shape)


def make_pooling(shape, rng, train_flg=True, pool=2, stride=2, pad=0, mode="max"):
    """:class:`Pooling`; max-pool inputs are distinct (no ties in any window)."""
    layer = Pooling(pool, pool, stride=stride, pad=pad, mode=mode)
    x = _distinct(rng, shape) if mode == "max" else rng.normal(0.0, 1.0, shape)
    return layer, x


def make_spatial_batchnorm(shape, rng, train_flg=True):
    """:class:`SpatialBatchNormalization`; eval mode gets running statistics."""
    C = shape[1]
    layer = SpatialBatchNormalization(
        rng.uniform(0.5, 1.5, C), rng.normal(0.0, 0.5, C), 0.9,
        None if train_flg else rng.normal(0.0, 0.5, C),
        None if train_flg else rng.uniform(0.5, 2.0, C))
    return layer, rng.normal(0.3, 1.2, shape)


def make_layernorm(shape, rng, train_flg=True):
    """:class:`LayerNorm` with ``gamma`` and ``beta`` of shape ``shape[1:]``."""
    layer = LayerNorm(rng.uniform(0.5, 1.5, shape[1:]), rng.normal(0.0, 0.5, shape[1:]))
    return layer, rng.normal(0.3, 1.2, shape)


def make_groupnorm(shape, rng, train_flg=True, num_groups=2):
    """:class:`GroupNorm` with ``num_groups`` groups (must divide ``shape[1]``)."""
    C = shape[1]
    layer = GroupNorm(num_groups, rng.uniform(0.5, 1.5, C), rng.normal(0.0, 0.5, C))
    return layer, rng.normal(0.3, 1.2, shape)


def make_mlp(shape, rng, train_flg=True, hidden=6, classes=3):
    """Sequential(Affine, Tanh, BatchNormalization, Dropout, Affine, SoftmaxWithLoss).

    (Tanh comes before the batch normalisation: an affine bias directly before
    a train-mode batch normalisation has an identically zero gradient.)
    """
    N, D = shape
    affine1, x = make_affine(shape, rng, train_flg, out_features=hidden)
    bn, _ = make_batchnorm((N, hidden), rng, train_flg)
    dropout, _ = make_dropout((N, hidden), rng, train_flg)
    affine2, _ = make_affine((N, hidden), rng, train_flg, out_features=classes)
    loss = SoftmaxWithLoss(rng.integers(0, classes, N))
    return Sequential(affine1, Tanh(), bn, dropout, affine2, loss), x


def make_cnn(shape, rng, train_flg=True, filters=3, outputs=2, margin=0.05):
    """Sequential(Convolution 3x3 pad 1, Relu, Pooling avg 2x2, Affine).

    ``x`` is redrawn until every ReLU input is at least ``margin`` from 0
    (and the filters too, every 20 draws: some filters make that unlikely).
    """
    conv, x = make_convolution(shape, rng, train_flg, filters=filters, pad=1)
    for attempt in range(1000):
        if np.min(np.abs(conv.forward(x))) >= margin:
            break
        if attempt % 20 == 19:
            conv, x = make_convolution(shape, rng, train_flg, filters=filters, pad=1)
        else:
            x = rng.normal(0.0, 1.0, shape)
    else:  # pragma: no cover - the loop ends after a few draws
        raise RuntimeError("make_cnn: could not draw an input away from the ReLU kink")
    N, C, H, W = shape
    affine, _ = make_affine((N, filters * (H // 2) * (W // 2)), rng, train_flg, outputs)
    return Sequential(conv, Relu(), Pooling(2, 2, stride=2, mode="avg"), affine), x


SPECS = [
    LayerSpec("BatchNormalization-2d", make_batchnorm,
              shapes=((8, 5), (16, 12), (3, 7)),
              notes="the seed's layer, (N, D)"),
    LayerSpec("BatchNormalization-4d", make_batchnorm,
              shapes=((4, 3, 5, 5), (2, 2, 3, 4), (6, 1, 2, 3)),
              notes="the seed's layer, (N, C, H, W) flattened to (N, C*H*W)"),
    LayerSpec("Affine-2d", make_affine, shapes=((4, 5), (2, 3)), modes=(True,)),
    LayerSpec("Affine-4d", make_affine, shapes=((2, 2, 3, 3), (3, 1, 2, 2)), modes=(True,),
              notes="(N, C, H, W) flattened; dx reshaped back"),
    LayerSpec("Relu", partial(make_activation, Relu), shapes=((4, 5), (2, 3, 3, 3)),
              modes=(True,), notes="|x| >= 0.05, away from the kink"),
    LayerSpec("Sigmoid", partial(make_activation, Sigmoid), shapes=((4, 5), (2, 2, 3, 3)),
              modes=(True,)),
    LayerSpec("Tanh", partial(make_activation, Tanh), shapes=((4, 5), (2, 2, 3, 3)),
              modes=(True,)),
    LayerSpec("SoftmaxWithLoss-index", make_softmax_loss, shapes=((4, 5), (6, 3)),
              modes=(True,), notes="scalar output; labels as class indices"),
    LayerSpec("SoftmaxWithLoss-onehot", partial(make_softmax_loss, onehot=True),
              shapes=((4, 5), (6, 3)), modes=(True,), notes="scalar output; one-hot labels"),
    LayerSpec("Dropout", make_dropout, shapes=((4, 5), (2, 2, 3, 3)),
              notes="p=0.3, inverted (scaled) dropout; a fresh mask per train forward"),
    LayerSpec("Dropout-unscaled", partial(make_dropout, scale=False),
              shapes=((4, 5), (2, 2, 3, 3)), notes="the book's variant: eval multiplies by 1-p"),
    LayerSpec("Convolution", make_convolution, shapes=((2, 3, 5, 5), (1, 3, 4, 6)),
              modes=(True,), notes="3 filters 3x3, stride 1, no padding"),
    LayerSpec("Convolution-stride2-pad1", partial(make_convolution, stride=2, pad=1),
              shapes=((2, 2, 5, 5), (1, 2, 6, 4)), modes=(True,)),
    LayerSpec("Pooling-max-2x2", make_pooling, shapes=((2, 2, 4, 4), (1, 3, 4, 6)),
              modes=(True,), notes="stride 2; distinct values, no ties"),
    LayerSpec("Pooling-max-3x3-stride1-pad1", partial(make_pooling, pool=3, stride=1, pad=1),
              shapes=((2, 2, 4, 4), (1, 2, 5, 3)), modes=(True,),
              notes="overlapping windows, -inf padding"),
    LayerSpec("Pooling-avg-2x2", partial(make_pooling, mode="avg"),
              shapes=((2, 2, 4, 4), (1, 3, 4, 6)), modes=(True,)),
    LayerSpec("Pooling-avg-3x3-stride2-pad1",
              partial(make_pooling, pool=3, stride=2, pad=1, mode="avg"),
              shapes=((2, 2, 5, 5), (1, 2, 4, 6)), modes=(True,),
              notes="zero padding counted in the mean"),
    LayerSpec("SpatialBatchNormalization", make_spatial_batchnorm,
              shapes=((4, 3, 2, 2), (2, 2, 3, 3)), notes="per-channel statistics"),
    LayerSpec("LayerNorm-2d", make_layernorm, shapes=((4, 6), (2, 5)), modes=(True,)),
    LayerSpec("LayerNorm-4d", make_layernorm, shapes=((2, 2, 3, 3), (3, 3, 2, 2)),
              modes=(True,)),
    LayerSpec("GroupNorm", make_groupnorm, shapes=((2, 4, 3, 3), (3, 6, 2, 2)), modes=(True,),
              notes="2 groups"),
    LayerSpec("Sequential-mlp", make_mlp, shapes=((4, 5), (6, 3)),
              notes="Affine, Tanh, BatchNormalization, Dropout, Affine, SoftmaxWithLoss"),
    LayerSpec("Sequential-cnn", make_cnn, shapes=((2, 2, 4, 4),), modes=(True,),
              notes="Convolution, Relu, Pooling avg, Affine"),
]

#: Built-in configurations that this installation cannot build: ``[(name, reason)]``.
UNAVAILABLE = []


def _digits_networks():
    """``examples/digits_networks.py`` (real images: scikit-learn's digits), or a reason."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "digits_networks.py"
    if not path.is_file():
        return None, "examples/digits_networks.py is not there (install from a source checkout)"
    if importlib.util.find_spec("sklearn") is None:
        return None, "needs scikit-learn for its images: pip install scikit-learn"
    spec = importlib.util.spec_from_file_location("gradcheck_examples_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, None


def _add_digits_networks():
    module, reason = _digits_networks()
    names = ("Digits-MLP", "Digits-ConvNet")
    if module is None:
        UNAVAILABLE.extend((name, reason) for name in names)
        return
    SPECS.append(LayerSpec(
        names[0], lambda shape, rng, train_flg=True: module.make_mlp(train_flg),
        shapes=((16, 64),), train_options={"expect_zero": ("b_0",)},
        notes="Affine, BatchNormalization, Relu, Affine, SoftmaxWithLoss "
        "on 16 real digit images (examples/digits_networks.py); the first bias feeds a "
        "train-mode batch normalisation, so its gradient is zero in train mode: expect_zero"))
    SPECS.append(LayerSpec(
        names[1], lambda shape, rng, train_flg=True: module.make_convnet(train_flg),
        shapes=((8, 1, 8, 8),), train_options={"expect_zero": ("b_0",)},
        notes="Convolution, BatchNormalization, Relu, max Pooling, "
        "Affine, SoftmaxWithLoss on 8 real digit images (examples/digits_networks.py)"))


_add_digits_networks()


def get_spec(name):
    """Return the spec called ``name`` (``KeyError`` listing the names otherwise)."""
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"no built-in layer {name!r}; known: {[s.name for s in SPECS]}")


def builtin_cases(seed=0):
    """Every (spec, shape, mode) of the built-in suite, as :class:`Case` objects."""
    cases = []
    for spec in SPECS:
        for i, shape in enumerate(spec.shapes):
            for train_flg in spec.modes:
                cases.append(Case(spec, shape, train_flg, seed=seed + i))
    return cases
