"""A chain of layers that is itself a layer."""

import inspect

import numpy as np

__all__ = ["Sequential"]

_GENERATORS = (np.random.Generator, np.random.RandomState)


def _accepts_train_flg(layer):
    """Whether ``layer.forward`` takes a ``train_flg`` argument."""
    try:
        params = inspect.signature(layer.forward).parameters
    except (TypeError, ValueError):
        return False
    return "train_flg" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _exposed(layer):
    """Names of ``layer``'s attributes that :class:`Sequential` re-exposes.

    Parameters (ndarray ``p`` with an attribute ``dp``, possibly still
    ``None``) and their gradients, running statistics (``running_*``) and
    random generators.
    """
    names = []
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and hasattr(layer, "d" + name):
            names += [name, "d" + name]
        elif name.startswith("running_") or isinstance(value, _GENERATORS):
            names.append(name)
    return names


class Sequential:
    """Layers applied one after the other.

    Parameters
    ----------
    *layers : layer objects
        Each with ``forward(x[, train_flg])`` and ``backward(dout)``.

    Attributes
    ----------
    layers : list
        The children, in order.
    <name>_<i> : ndarray
        Every parameter ``name`` of child ``i`` (``W_0``, ``b_0``,
        ``gamma_2``, ...): the *same* ndarray object as the child's, so an
        in-place change of ``seq.W_0`` changes ``seq.layers[0].W``.
    d<name>_<i> : ndarray or None
        The child's gradient (``dW_0``, ...), current after :meth:`backward`.

    Notes
    -----
    For layers :math:`f_0, \\dots, f_{K-1}`:

    .. math::

        y = f_{K-1}(\\cdots f_1(f_0(x))), \\qquad
        \\frac{\\partial L}{\\partial x} = J_{f_0}^\\top \\cdots J_{f_{K-1}}^\\top
            \\frac{\\partial L}{\\partial y}

    :meth:`forward` passes ``train_flg`` to the children whose ``forward``
    accepts it; :meth:`backward` runs the children's ``backward`` in reverse.
    Besides parameters and gradients, a child's running statistics
    (``running_mean_1``, ...) and random generators (``rng_3``, ...) are
    exposed the same way, so a gradient checker that snapshots, restores or
    replays the attributes of the ``Sequential`` also covers its children.
    Assigning to an exposed attribute assigns to the child. A ``Sequential``
    may contain another one: its ``W_0`` becomes ``W_0_1`` when it is child 1.

    Examples
    --------
    >>> import numpy as np
    >>> from layers import Affine, Relu
    >>> seq = Sequential(Affine(np.eye(2), np.zeros(2)), Relu())
    >>> seq.forward(np.array([[1.0, -1.0]]))
    array([[1., 0.]])
    >>> seq.param_names
    ['W_0', 'b_0']
    >>> seq.W_0 is seq.layers[0].W
    True
    >>> dx = seq.backward(np.ones((1, 2)))
    >>> seq.db_0
    array([1., 0.])
    """

    def __init__(self, *layers):
        object.__setattr__(self, "layers", list(layers))
        links = {}
        for i, layer in enumerate(layers):
            for name in _exposed(layer):
                links[f"{name}_{i}"] = (i, name)
        object.__setattr__(self, "_links", links)
        self._sync()

    @property
    def param_names(self):
        """Names of the exposed parameters, in order (``["W_0", "b_0", ...]``)."""
        return [n for n in self._links if "d" + n in self._links]

    def _sync(self):
        """Copy the children's current attribute objects (not values) here."""
        for public, (i, name) in self._links.items():
            self.__dict__[public] = getattr(self.layers[i], name, None)

    def __setattr__(self, name, value):
        link = self._links.get(name)
        if link is not None:
            setattr(self.layers[link[0]], link[1], value)
        object.__setattr__(self, name, value)

    def forward(self, x, train_flg=True):
        """Apply the children in order.

        Parameters
        ----------
        x : ndarray
            Input of the first child.
        train_flg : bool, default True
            Passed to every child whose ``forward`` accepts it.

        Returns
        -------
        out : ndarray
            Output of the last child.
        """
        try:
            for layer in self.layers:
                if _accepts_train_flg(layer):
                    x = layer.forward(x, train_flg=train_flg)
                else:
                    x = layer.forward(x)
        finally:
            self._sync()
        return x

    def backward(self, dout):
        """Run the children's ``backward`` in reverse order.

        Parameters
        ----------
        dout : ndarray
            Gradient with respect to the last child's output.

        Returns
        -------
        dx : ndarray
            Gradient with respect to the first child's input; the children's
            parameter gradients are then exposed as ``dW_0``, ...
        """
        try:
            for layer in reversed(self.layers):
                dout = layer.backward(dout)
        finally:
            self._sync()
        return dout

    def __repr__(self):
        inner = ", ".join(type(layer).__name__ for layer in self.layers)
        return f"Sequential({inner})"
