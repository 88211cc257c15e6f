"""Regularization a backward adds to a parameter's gradient ("Neural Networks from Scratch").

NNFS's ``Layer_Dense(n_in, n_out, weight_regularizer_l1=0, weight_regularizer_l2=0,
bias_regularizer_l1=0, bias_regularizer_l2=0)`` adds the gradient of the
regularization loss to its parameter gradients in ``backward``::

    self.dweights += self.weight_regularizer_l2 * 2 * self.weights
    dL1 = np.ones_like(self.weights); dL1[self.weights < 0] = -1
    self.dweights += self.weight_regularizer_l1 * dL1

while the penalty itself is computed apart, by ``Loss.regularization_loss(layer)``:
``l1 * sum(|W|) + l2 * sum(W * W)``. The forward output does not contain it, so
a finite difference of ``forward`` misses it and a correct layer would FAIL.
:func:`penalty_gradients` finds the coefficients and the adapter subtracts
that gradient (this exact formula, NNFS's sign convention at 0 included) from
the layer's: what is left is checked against the finite differences, so a
wrong regularization term still FAILs as the parameter's gradient.
"""

import numpy as np

from gradcheck.protocol.paths import lookup

__all__ = ["REGULARIZERS", "coefficient_names", "penalty_gradients", "subtract_penalty",
           "describe"]

#: ``{parameter: (its gradient, the stem its coefficients are named by)}``.
REGULARIZERS = {
    "weights": ("dweights", "weight"),
    "biases": ("dbiases", "bias"),
}


def coefficient_names(layer, stem):
    """The names of ``layer``'s L1 and L2 coefficients for the parameter ``stem``:
    ``(l1 name or None, l2 name or None)``.

    NNFS names them ``weight_regularizer_l1``/``_l2``; variants reorder the words
    (``l2_weight_regularizer``, ``bias_l1_regularization``): a coefficient is an
    attribute whose ``_``-separated words hold ``l1`` or ``l2``, the stem (``weight``,
    ``weights``) and a word starting with ``regulari``, in any order. NNFS's own names
    come first where both exist.
    """
    found = {"l1": None, "l2": None}
    for name in _attribute_names(layer):
        words = name.lower().split("_")
        order = [w for w in ("l1", "l2") if w in words]
        if len(order) == 1 and any(w in (stem, stem + "s") for w in words) \
                and any(w.startswith("regulari") for w in words):
            if found[order[0]] is None or name == f"{stem}_regularizer_{order[0]}":
                found[order[0]] = name
    return found["l1"], found["l2"]


def _attribute_names(layer):
    names = list(getattr(layer, "__dict__", {}))
    return names + [n for n in dir(type(layer)) if not n.startswith("_") and n not in names]


def _coefficient(layer, name):
    value = lookup(layer, name, 0) if name is not None else 0
    return float(value) if isinstance(value, (int, float, np.floating, np.integer)) else 0.0


def penalty_gradients(layer):
    """``{gradient attribute: gradient of the penalty}`` of the regularized parameters.

    Parameters
    ----------
    layer : object

    Returns
    -------
    dict of str to ndarray
        Empty when no coefficient is set (nonzero), or the parameter is not an array.
    """
    out = {}
    for param, (grad, stem) in REGULARIZERS.items():
        W = lookup(layer, param, None)
        l1, l2 = (_coefficient(layer, n) for n in coefficient_names(layer, stem))
        if not isinstance(W, np.ndarray) or W.dtype.kind != "f" or not (l1 or l2):
            continue
        sign = np.where(W < 0, -1.0, 1.0)
        out[grad] = l1 * sign + 2.0 * l2 * W.astype(np.float64)
    return out


def subtract_penalty(layer):
    """After ``layer.backward``: each regularized gradient minus its penalty's gradient
    (rebound to a new array; the layer's own is not written into)."""
    for grad, term in penalty_gradients(layer).items():
        g = getattr(layer, grad, None)
        if isinstance(g, np.ndarray) and g.shape == term.shape:
            setattr(layer, grad, (g.astype(np.float64) - term).astype(g.dtype, copy=False))


def describe(layer):
    """The note of a check that subtracted :func:`penalty_gradients` (``None`` if none)."""
    terms = []
    for param, (grad, stem) in REGULARIZERS.items():
        names = coefficient_names(layer, stem)
        l1, l2 = (_coefficient(layer, n) for n in names)
        if isinstance(lookup(layer, param, None), np.ndarray) and (l1 or l2):
            terms.append(f"{param} (" + ", ".join(f"{n}={_coefficient(layer, n):g}"
                                                  for n in names if n is not None) + ")")
    if not terms:
        return None
    return ("regularized parameters " + ", ".join(terms) + ": backward adds the gradient of "
            "the regularization loss (l1 * sum|p| + l2 * sum p**2, computed apart by "
            "Loss.regularization_loss, not by forward); the check subtracted exactly that "
            "term from the gradient, so what it compares is forward's, and a wrong "
            "regularization term FAILs as the parameter's gradient")
