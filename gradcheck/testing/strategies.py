"""Hypothesis strategies for property-based gradient checks of numpy layers.

Import it explicitly (``from gradcheck.testing.strategies import layer_cases``): it
needs ``hypothesis``, which ``import gradcheck`` never imports.
"""

import numpy as np
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

__all__ = ["shapes_2d", "shapes_4d", "float_arrays", "parameters_for", "layer_cases",
           "EDGE_LARGE", "EDGE_TINY"]

#: Factor applied to an array by the "large magnitudes" edge case.
EDGE_LARGE = 1e5
#: Factor applied to an array by the "tiny magnitudes" edge case.
EDGE_TINY = 1e-5


def _check_range(name, low, high):
    if not all(isinstance(v, (int, np.integer)) and v >= 1 for v in (low, high)) or low > high:
        raise InvalidArgument(f"need ints 1 <= min_{name} <= max_{name}, got {low!r}, {high!r}")
    return st.integers(int(low), int(high))


def shapes_2d(min_n=1, max_n=8, min_d=1, max_d=8):
    """Shapes ``(N, D)``: ``min_n <= N <= max_n`` samples, ``min_d <= D <= max_d`` features.

    All bounds are ints ``>= 1``. Returns a ``SearchStrategy`` of tuples of int.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=10, database=None)
    ... @given(shapes_2d(min_n=2, max_n=4, max_d=3))
    ... def test(shape):
    ...     assert 2 <= shape[0] <= 4 and 1 <= shape[1] <= 3
    >>> test()
    """
    return st.tuples(_check_range("n", min_n, max_n), _check_range("d", min_d, max_d))


def shapes_4d(min_n=1, max_n=4, min_c=1, max_c=3, min_hw=1, max_hw=6):
    """Shapes ``(N, C, H, W)`` of image batches, each size within its bounds.

    ``H`` and ``W`` are drawn independently from ``[min_hw, max_hw]``. All
    bounds are ints ``>= 1``. Returns a ``SearchStrategy`` of tuples of int.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=10, database=None)
    ... @given(shapes_4d(max_n=2, min_hw=3, max_hw=5))
    ... def test(shape):
    ...     N, C, H, W = shape
    ...     assert N <= 2 and 3 <= H <= 5 and 3 <= W <= 5
    >>> test()
    """
    hw = _check_range("hw", min_hw, max_hw)
    return st.tuples(_check_range("n", min_n, max_n), _check_range("c", min_c, max_c), hw, hw)


def _bound(value, dtype, toward):
    """``value`` rounded into ``dtype``, towards ``toward`` (+inf or -inf)."""
    r = dtype.type(value)
    ok = float(r) >= value if toward > 0 else float(r) <= value  # compare in float64
    return float(r if ok else np.nextafter(r, dtype.type(toward)))


def _signed_floats(dtype, low, high):
    """Floats of ``dtype`` with ``low <= |v| <= high``."""
    width = 8 * dtype.itemsize
    lo, hi = _bound(low, dtype, np.inf), _bound(high, dtype, -np.inf)
    kw = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=width)
    if lo == 0:
        return st.floats(-hi, hi, **kw)
    return st.floats(lo, hi, **kw) | st.floats(-hi, -lo, **kw)


def _kink_free(shape, dtype, low, high, margin):
    """``|v| >= max(low, margin)``, gaps ``>= margin``: a jittered grid of unique k != 0."""
    size = int(np.prod(shape))
    base = max(low, margin)
    K = max(int((high - base) // (2 * margin)) + 1, size, 1)
    ks = hnp.arrays(np.int64, shape, elements=st.integers(-K, K).filter(bool), unique=True)
    jitter = hnp.arrays(np.float64, shape, elements=st.floats(0.0, 0.99 * margin))

    def combine(pair):
        k, j = pair
        return (np.sign(k) * (base + 2 * margin * (np.abs(k) - 1) + j)).astype(dtype)

    return st.tuples(ks, jitter).map(combine)


def _constant_column(pair):
    x, (j, c) = pair
    x = x.copy()
    x[:, j] = c
    return x


def float_arrays(shape, dtype=np.float64, min_magnitude=0.01, max_magnitude=10.0,
                 away_from_kinks=False, kink_margin=0.05, edge_cases=False):
    """Finite, well-scaled float arrays for gradient checks.

    Parameters
    ----------
    shape : tuple of int or SearchStrategy of tuple of int
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
    min_magnitude, max_magnitude : float, default 0.01 and 10.0
        Every element satisfies ``min_magnitude <= |v| <= max_magnitude``
        (``min_magnitude=0`` allows zeros). No NaN, infinity or subnormal.
    away_from_kinks : bool, default False
        Also ``|v| >= kink_margin`` (away from ReLU's kink) and every two
        elements at least ``kink_margin`` apart (no max-pooling ties). Values
        lie on a jittered grid; when the array has more than
        ``max_magnitude / (2 kink_margin)`` elements the magnitudes grow
        beyond ``max_magnitude`` to make room.
    kink_margin : float, default 0.05
    edge_cases : bool, default False
        Also draw, besides the plain arrays, the plain arrays scaled by
        :data:`EDGE_LARGE` and by :data:`EDGE_TINY` (then the magnitude
        bounds do not hold) and arrays of ``ndim >= 2`` and ``N >= 2`` with one
        constant column ``x[:, j]`` (a feature with zero batch variance). With
        ``away_from_kinks`` only the large scaling is added, which keeps the
        elements apart.

    Returns
    -------
    SearchStrategy of ndarray of shape ``shape`` and dtype ``dtype``

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=10, database=None)
    ... @given(float_arrays((3, 4), away_from_kinks=True))
    ... def test(x):
    ...     assert x.shape == (3, 4) and np.all(np.abs(x) >= 0.05)
    ...     assert np.min(np.diff(np.sort(x.ravel()))) >= 0.05
    >>> test()
    """
    if isinstance(shape, SearchStrategy):
        return shape.flatmap(lambda s: float_arrays(
            s, dtype, min_magnitude, max_magnitude, away_from_kinks, kink_margin, edge_cases))
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise InvalidArgument(f"dtype must be float64 or float32, got {dtype}")
    shape = tuple(int(s) for s in shape)
    if not (0 <= min_magnitude <= max_magnitude < np.inf and max_magnitude > 0):
        raise InvalidArgument("need 0 <= min_magnitude <= max_magnitude < inf, max_magnitude > 0; "
                              f"got {min_magnitude!r}, {max_magnitude!r}")
    if not kink_margin > 0:
        raise InvalidArgument(f"kink_margin must be > 0, got {kink_margin!r}")
    if away_from_kinks:
        base = _kink_free(shape, dtype, min_magnitude, max_magnitude, kink_margin)
    else:
        base = hnp.arrays(dtype, shape,
                          elements=_signed_floats(dtype, min_magnitude, max_magnitude))
    if not edge_cases:
        return base
    cast = lambda f: (lambda a: (a * f).astype(dtype))  # noqa: E731
    options = [base, base.map(cast(EDGE_LARGE))]
    if not away_from_kinks:
        options.append(base.map(cast(EDGE_TINY)))
        if len(shape) >= 2 and shape[0] >= 2 and shape[1] >= 1:
            column = st.tuples(st.integers(0, shape[1] - 1),
                               _signed_floats(dtype, min_magnitude, max_magnitude))
            options.append(st.tuples(base, column).map(_constant_column))
    return st.one_of(options)


# -- layer parameters ---------------------------------------------------------

def _params(shape, low=0.1, high=2.0):
    return float_arrays(shape, min_magnitude=low, max_magnitude=high)


def _bn_kwargs(D):
    variances = hnp.arrays(np.float64, (D,), elements=st.floats(0.25, 4.0))
    running = st.just((None, None)) | st.tuples(_params((D,), 0.0), variances)
    return st.tuples(_params((D,)), _params((D,), 0.0), st.floats(0.0, 0.99), running).map(
        lambda a: {"gamma": a[0], "beta": a[1], "momentum": a[2],
                   "running_mean": a[3][0], "running_var": a[3][1]})


@st.composite
def _conv_kwargs(draw, shape):
    N, C, H, W = shape
    pad = draw(st.integers(0, 1))
    fh = draw(st.integers(1, min(3, H + 2 * pad)))
    fw = draw(st.integers(1, min(3, W + 2 * pad)))
    F = draw(st.integers(1, 3))
    return {"W": draw(_params((F, C, fh, fw), 0.0, 1.0)), "b": draw(_params((F,), 0.0)),
            "stride": draw(st.integers(1, 2)), "pad": pad}


@st.composite
def _pool_kwargs(draw, shape):
    H, W = shape[2:]
    ph, pw = draw(st.integers(1, min(3, H))), draw(st.integers(1, min(3, W)))
    return {"pool_h": ph, "pool_w": pw, "stride": draw(st.integers(1, 2)),
            "pad": draw(st.integers(0, min(ph, pw) // 2)),
            "mode": draw(st.sampled_from(["max", "avg"]))}


def _labels(N, C):
    index = hnp.arrays(np.int64, (N,), elements=st.integers(0, C - 1))
    return index | index.map(lambda t: np.eye(C)[t])


_NDIM = {"Convolution": 4, "Pooling": 4, "SoftmaxWithLoss": 2}

_PARAMETERS = {
    "Affine": lambda s: st.integers(1, 4).flatmap(lambda M: st.fixed_dictionaries(
        {"W": _params((int(np.prod(s[1:])), M), 0.0, 1.0), "b": _params((M,), 0.0)})),
    "Relu": lambda s: st.just({}),
    "Sigmoid": lambda s: st.just({}),
    "Tanh": lambda s: st.just({}),
    "SoftmaxWithLoss": lambda s: st.fixed_dictionaries({"t": _labels(*s)}),
    "Dropout": lambda s: st.fixed_dictionaries({
        "dropout_ratio": st.floats(0.0, 0.9), "seed": st.integers(0, 2**32 - 1),
        "scale": st.booleans()}),
    "Convolution": _conv_kwargs,
    "Pooling": _pool_kwargs,
    "BatchNormalization": lambda s: _bn_kwargs(int(np.prod(s[1:]))),
    "SpatialBatchNormalization": lambda s: _bn_kwargs(s[1]),
    "LayerNorm": lambda s: st.fixed_dictionaries({"gamma": _params(s[1:]),
                                                  "beta": _params(s[1:], 0.0)}),
    "GroupNorm": lambda s: st.fixed_dictionaries({
        "num_groups": st.sampled_from([g for g in range(1, s[1] + 1) if s[1] % g == 0]),
        "gamma": _params((s[1],)), "beta": _params((s[1],), 0.0)}),
}


def parameters_for(layer_name, shape):
    """Constructor arguments of layer ``layer_name`` fitting an input of ``shape``.

    Parameters
    ----------
    layer_name : str
        A class name of :mod:`layers` (``"Affine"``, ``"Convolution"``,
        ``"GroupNorm"``, ...; not ``"Sequential"``: compose its children).
    shape : tuple of int
        The input shape: ``(N, C, H, W)`` for ``"Convolution"`` and
        ``"Pooling"``, ``(N, C)`` for ``"SoftmaxWithLoss"``, ``(N, ...)`` else.

    Returns
    -------
    SearchStrategy of dict
        ``kwargs`` such that ``getattr(layers, layer_name)(**kwargs)`` accepts
        input of ``shape``: float64 parameters of magnitude at most 2, running
        variances in ``[0.25, 4]`` (running statistics both arrays or both None).

    Examples
    --------
    >>> import numpy as np
    >>> import layers
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=10, database=None)
    ... @given(parameters_for("Convolution", (2, 3, 5, 5)))
    ... def test(kwargs):
    ...     conv = layers.Convolution(**kwargs)
    ...     assert conv.forward(np.ones((2, 3, 5, 5))).shape[:2] == (2, len(kwargs["b"]))
    >>> test()
    """
    if layer_name not in _PARAMETERS:
        raise InvalidArgument(
            f"no parameter strategy for layer {layer_name!r}; known: {sorted(_PARAMETERS)}")
    shape = tuple(int(s) for s in shape)
    ndim = _NDIM.get(layer_name)
    if len(shape) < 2 or ndim is not None and len(shape) != ndim:
        raise InvalidArgument(
            f"{layer_name} needs an input shape of {ndim or 'at least 2'} dimensions, "
            f"got {shape}")
    return _PARAMETERS[layer_name](shape)


# -- complete cases of the built-in suite ------------------------------------

def layer_cases(names=None, modes=None):
    """Complete ``(layer, x, train_flg)`` triples of the built-in layers.

    Draws a spec of :data:`gradcheck.gate.suite.SPECS`, one of its shapes and modes,
    and a seed for ``spec.make``; all are reported (``hypothesis.note``) on failure.

    Parameters
    ----------
    names : iterable of str or None
        Spec names (``"Affine-2d"``, ``"Pooling-max-2x2"``, ...); ``None``
        means every spec.
    modes : iterable of bool or None
        Keep only these values of ``train_flg`` (``None``: all the spec's).

    Returns
    -------
    SearchStrategy of tuple (layer, ndarray, bool)
        A fresh layer, its float64 input and the mode.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, database=None)
    ... @given(layer_cases(["Affine-2d", "Tanh"]))
    ... def test(case):
    ...     layer, x, train_flg = case
    ...     assert layer.backward(layer.forward(x)).shape == x.shape
    >>> test()
    """
    from gradcheck.gate.suite import SPECS

    known = {spec.name: spec for spec in SPECS}
    names = list(known) if names is None else list(names)
    if not names or any(n not in known for n in names):
        raise InvalidArgument(f"names must be spec names from {list(known)}, got {names!r}")
    pairs = [(known[n], m) for n in names for m in known[n].modes
             if modes is None or m in tuple(modes)]
    if not pairs:
        raise InvalidArgument(f"no spec among {names} supports the modes {modes!r}")

    @st.composite
    def cases(draw):
        spec, train_flg = draw(st.sampled_from(pairs))
        shape = tuple(draw(st.sampled_from(spec.shapes)))
        seed = draw(st.integers(0, 2**32 - 1))
        note(f"layer_cases: {spec.name} shape={shape} train_flg={train_flg} seed={seed}")
        layer, x = spec.make(shape, np.random.default_rng(seed), train_flg)
        return layer, x, train_flg

    return cases()
