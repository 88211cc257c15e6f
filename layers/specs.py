"""Registry of built-in layer configurations.

One :class:`LayerSpec` per layer configuration: how to build the layer and a
matching input for a given shape, which shapes the built-in suite checks and in
which modes. The CLI's built-in suite, the tests and the benchmarks all read
this table, so adding a layer here adds it everywhere.
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from layers.batchnorm import BatchNormalization

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
    """

    name: str
    make: Callable
    shapes: tuple
    modes: tuple = (True, False)
    notes: str = ""


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


SPECS = [
    LayerSpec("BatchNormalization-2d", make_batchnorm,
              shapes=((8, 5), (16, 12), (3, 7)),
              notes="the seed's layer, (N, D)"),
    LayerSpec("BatchNormalization-4d", make_batchnorm,
              shapes=((4, 3, 5, 5), (2, 2, 3, 4), (6, 1, 2, 3)),
              notes="the seed's layer, (N, C, H, W) flattened to (N, C*H*W)"),
]


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
