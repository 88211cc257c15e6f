"""Backwards that apply their own optimizer step: the step read as the gradient, then undone.

A common tutorial convention ("The Independent Code", Omar Aflak's "Neural
Network from scratch in Python", and the many layers copied from it) keeps no
gradient attribute at all: ``backward(output_gradient, learning_rate)``
returns the input gradient and updates the weights itself,
``self.weights -= learning_rate * weights_gradient``. The parameter gradient
is then only visible in the step. With a plain SGD step, ``before - after =
learning_rate * gradient`` exactly up to the rounding of the update, so

* :func:`stepped_arrays` finds the arrays a backward steps: those whose change
  is proportional to the learning rate (one backward with ``lr`` and one with
  ``2 lr`` from the same state after a forward); a cache that backward
  rewrites does not scale with it, and is left alone. Any other array it
  changes that forward reads (one forward call with it) is a parameter stepped
  otherwise than in proportion to the rate (``lr**2 * g``, ``g`` alone):
  :attr:`Steps.unscaled`. When backward steps something, the gradients the two
  calls return must be the same (a ``dx`` is no function of the step size:
  ``learning_rate * input_gradient`` is right only at ``lr = 1``, the rate every
  other call of the check uses), else :attr:`Steps.dx_change` says by how much;
* :class:`StepReader` calls backward with :data:`LEARNING_RATE`, reads every
  stepped array's gradient as ``(before - after) / LEARNING_RATE`` and puts the
  array back (the same object, the same contents), so every call the check
  makes starts from the parameters it checks, and a second backward on one
  forward sees the same weights (a training loop calls it once per forward).

The gradient read this way is that of plain SGD; a backward that applies
momentum or Adam steps by something else, and its parameters FAIL with the
note saying how the gradient was read.

ML-From-Scratch (eriklindernoren) steps through an optimizer *object* instead:
``initialize(optimizer)`` keeps ``self.W_opt = copy.copy(optimizer)`` and
``backward_pass`` ends with ``self.W = self.W_opt.update(self.W, grad_w)``
(SGD with momentum, Adam, ...). There the gradient is an argument of a call,
so it is read exactly, whatever the optimizer:

* :func:`optimizer_paths` finds the optimizers a layer holds, by duck typing:
  attributes (of the layer and its sub-layers) whose value has a callable
  ``update(w, grad)`` taking two positional parameters;
* :class:`UpdateRecorder` swaps each of them, for one backward call, for a
  recorder whose ``update(w, grad)`` keeps ``grad`` under the path of the
  parameter attribute holding ``w`` (by identity) and returns a *moved copy*
  of ``w`` (:data:`UPDATE_SHIFT`), so that a ``dx`` taken from the updated
  weights (``accum_grad.dot(self.W.T)`` after ``self.W = self.W_opt.update(self.W,
  grad_w)``, where ML-From-Scratch keeps ``W = self.W`` from before the step)
  differs from the true one and FAILs; the weights are put back (the same
  object, the same contents) and so are the original optimizer objects when the
  call returns or raises, never having been called.
"""

import contextlib
from typing import NamedTuple, Optional

import numpy as np

from gradcheck.protocol.discovery import is_layer, layer_method
from gradcheck.protocol.paths import assign, resolve
from gradcheck.protocol.signatures import signature

__all__ = ["LR_NAMES", "LR_ATTRIBUTES", "LEARNING_RATE", "UPDATE_SHIFT", "learning_rate_parameter",
           "learning_rate_attribute", "rate_held", "rate_name", "is_rate_name", "is_rate_value",
           "rate_candidates", "read_by_forward", "stepped_arrays", "Steps", "StepReader",
           "optimizer_paths", "UpdateRecorder"]

#: Names under which a backward takes the learning rate of the step it applies itself.
LR_NAMES = ("learning_rate", "lr", "eta", "alpha", "step_size", "learn_rate", "rate")

#: Names under which a layer holds, as a number, the learning rate its backward steps with
#: (Yandex Practical_DL's ``Dense``: ``self.learning_rate``): those of :data:`LR_NAMES`
#: but ``rate``, which a dropout holds as its drop probability.
LR_ATTRIBUTES = tuple(n for n in LR_NAMES if n != "rate")

#: The learning rate passed to a backward that takes one (a power of 2: the step is
#: scaled exactly).
LEARNING_RATE = 1.0

#: The optimizer stand-in's ``update(w, grad)`` returns ``w + UPDATE_SHIFT * (1 + |w|)``:
#: every element moved by at least this much, whatever the gradient.
UPDATE_SHIFT = 0.5


def rate_name(name):
    """``name`` normalised for matching a learning rate's name against :data:`LR_NAMES`:
    camelCase split into snake_case, lower case, digits and the affixes ``base_``,
    ``initial_``, ``init_`` stripped (``learningRate``, ``lr0``, ``base_lr``,
    ``initial_learning_rate`` -> ``learning_rate``, ``lr``, ``lr``, ``learning_rate``).

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    from gradcheck.protocol.discovery import name_tokens

    words = [w for w in name_tokens(str(name)) if not w.isdigit()]
    if len(words) > 1 and words[0] in ("base", "initial", "init"):
        words = words[1:]
    return "_".join(words)


def is_rate_name(name, names=LR_NAMES):
    """Whether ``name``, normalised (:func:`rate_name`), is one of ``names``.

    Parameters
    ----------
    name : str
    names : collection of str

    Returns
    -------
    bool
    """
    return rate_name(name) in names


def learning_rate_parameter(layer):
    """``(name, positional_only)`` of the learning rate ``layer.backward`` takes, or ``None``.

    A backward that applies its own SGD step (``self.weights -= learning_rate *
    weights_gradient``) takes the rate as a parameter named as in
    :data:`LR_NAMES` (after the upstream gradient; with or without a default;
    matched by :func:`is_rate_name`: ``learningRate``, ``lr0``, ``base_lr``).
    """
    backward = layer_method(layer, "backward")
    sig = None if backward is None else signature(backward)
    if sig is None:
        return None
    for p in list(sig.parameters.values())[1:]:
        if is_rate_name(p.name) and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                               p.KEYWORD_ONLY):
            return p.name, p.kind == p.POSITIONAL_ONLY
    return None


def is_rate_value(value):
    """Whether ``value`` can be a learning rate: a real number (not a bool) or a 0-d
    floating array (``self.lr = np.array(0.1)``)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind == "f"
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def rate_candidates(layer):
    """The paths of the learning rates ``layer`` may hold, in attribute order: its own
    attributes named as in :data:`LR_ATTRIBUTES` (:func:`is_rate_name`) holding a rate
    (:func:`is_rate_value`), then the string keys so named of its dict attributes
    (``config['learning_rate']``, ``hparams['lr']``).

    Parameters
    ----------
    layer : object

    Returns
    -------
    list of str
    """
    attrs = getattr(layer, "__dict__", None)
    if not isinstance(attrs, dict):
        return []
    own = [n for n, v in attrs.items() if is_rate_name(n, LR_ATTRIBUTES) and is_rate_value(v)]
    held = [f"{n}[{k!r}]" for n, v in attrs.items() if type(v) is dict
            for k, item in v.items()
            if isinstance(k, str) and is_rate_name(k, LR_ATTRIBUTES) and is_rate_value(item)]
    return own + held


def learning_rate_attribute(layer):
    """The path of the learning rate ``layer`` holds, or ``None``.

    Yandex Practical_DL's ``Dense`` keeps ``self.learning_rate`` and its
    ``backward(input, grad_output)`` ends with ``self.weights = self.weights -
    self.learning_rate * grad_weights``. The first of :func:`rate_candidates`
    (``learningRate``, ``lr0``, ``base_lr``, a 0-d array, ``config['lr']``) is the
    candidate; whether backward steps anything with it is found by calling it
    (:func:`stepped_arrays`): an ELU's ``self.alpha`` steps nothing and is left
    alone, and one forward reads is no rate (:func:`read_by_forward`). A backward
    that takes a rate as a parameter (:func:`learning_rate_parameter`) is called
    with that one instead.

    Parameters
    ----------
    layer : object

    Returns
    -------
    str or None
        A path under ``layer`` (:func:`~gradcheck.protocol.paths.resolve`).
    """
    if learning_rate_parameter(layer) is not None:
        return None
    found = rate_candidates(layer)
    return found[0] if found else None


def _rate_like(saved, rate):
    """``rate`` as the same kind of object as ``saved``: a 0-d array of its dtype for a
    0-d array, else the number."""
    if isinstance(saved, np.ndarray):
        return np.array(rate, dtype=saved.dtype)
    return rate


@contextlib.contextmanager
def rate_held(layer, name, rate):
    """Within the block, the rate at the path ``name`` (:func:`learning_rate_attribute`)
    is ``rate`` (a 0-d array of its dtype when it held one); the object it held before is
    put back after, also when the block raises (or when backward itself decays its rate).
    Nothing is done when ``name`` or ``rate`` is ``None``.

    Parameters
    ----------
    layer : object
    name : str or None
        The rate's path (an attribute, or a key of a dict attribute).
    rate : float or None

    Yields
    ------
    None
    """
    if name is None or rate is None:
        yield
        return
    saved = resolve(layer, name)
    assign(layer, name, _rate_like(saved, rate))
    try:
        yield
    finally:
        assign(layer, name, saved)


def read_by_forward(layer, name, forward):
    """Whether ``forward`` reads the number at the path ``name``: its output with the
    number set to :data:`LEARNING_RATE` and to twice that differs (a leaky ReLU's
    ``alpha``, which backward may also use to update a statistic, is no learning rate).
    Two forward calls from the layer's state, put back; ``True`` when forward raises with
    it so set (``assert 0 <= alpha < 1``: forward reads it; the check's own calls report
    an error forward raises anyway).

    Parameters
    ----------
    layer : object
    name : str
    forward : callable
        ``forward()``: one forward call; returns its output.

    Returns
    -------
    bool
    """
    from gradcheck.protocol.state import StateSnapshot

    start = StateSnapshot(layer)
    outs = []
    try:
        for rate in (LEARNING_RATE, 2 * LEARNING_RATE):
            start.restore_all()
            with rate_held(layer, name, rate):
                outs.append(_returned(forward()))
    except Exception:  # noqa: BLE001 -- the check's own calls report it
        return True
    finally:
        start.restore_all()
    return not _equal_lists(*outs)


def _steps(layer, before):
    """``{path: before - now}`` (float64) of the arrays under ``layer`` that changed."""
    out = {}
    for path, saved in before.items():
        now = resolve(layer, path)
        if not isinstance(now, np.ndarray) or now.shape != saved.shape:
            continue
        d = saved.astype(np.float64) - now.astype(np.float64)
        if np.any(d):
            out[path] = d
    return out


def _scales(one, two, saved, ratio=2):
    """Whether ``two`` is ``ratio`` times ``one`` up to the rounding of both updates (2:
    a step in proportion to the rate; 1: a change that does not depend on it, a cache
    backward rewrites)."""
    eps = float(np.finfo(saved.dtype).eps)
    bound = 8 * eps * (np.abs(saved.astype(np.float64)) + np.abs(two))
    return bool(np.all(np.abs(two - ratio * one) <= bound))


class Steps(NamedTuple):
    """What :func:`stepped_arrays` found.

    Attributes
    ----------
    paths : tuple of str
        The arrays backward steps in proportion to its learning rate.
    dx_change : float or None
        ``max |returned(2 lr) - returned(lr)|`` of the gradients backward returned,
        when they differ beyond rounding and backward steps an array (else ``None``: a
        parameter of that name that steps nothing, an ELU's ``alpha``, is no rate).
    unscaled : tuple of str
        The arrays forward reads that backward changes by amounts not in proportion to
        the rate (``p -= lr**2 * g``, ``v = mu * v - lr * g; p += v``, ``p -= g``): no
        plain SGD step, so no gradient can be read from it (a cache backward rewrites,
        which forward does not read, is none).
    forwards : int
        The forward calls made.
    unstepped_change : float or None
        ``max |returned(2 lr) - returned(lr)|`` when backward steps nothing and its
        returned gradients still depend on the parameter (an ELU's ``alpha``, a scale:
        no learning rate, and the gradient is right at one value only), else ``None``.
    """

    paths: tuple
    dx_change: Optional[float] = None
    unscaled: tuple = ()
    forwards: int = 1
    unstepped_change: Optional[float] = None


def _returned(value):
    """The floating arrays of a backward's return value (one, or a tuple or list), float64."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    return [np.array(v, dtype=np.float64) for v in items
            if isinstance(v, (np.ndarray, float, np.floating))
            and np.asarray(v).dtype.kind == "f"]


def _dx_change(one, two):
    """``max |two - one|`` over the returned gradients (:func:`_returned`) when they differ
    by more than their rounding (``None`` when they agree, or are not alike)."""
    if len(one) != len(two) or any(a.shape != b.shape for a, b in zip(one, two)):
        return None
    worst = None
    for a, b in zip(one, two):
        d = np.abs(b - a)
        if np.any(d > 1e-8 * (np.abs(a) + np.abs(b)) + 1e-300):
            worst = max(worst or 0.0, float(np.max(d)))
    return worst


def stepped_arrays(layer, call_backward, forward):
    """The floating arrays that ``backward`` steps in proportion to its rate, and whether
    the gradients it returns depend on the rate.

    Parameters
    ----------
    layer : object
        The user's layer (restored to its state on return).
    call_backward : callable
        ``call_backward(lr)``: one backward call with learning rate ``lr``; returns
        what backward returned.
    forward : callable
        ``forward()``: one forward call (the state backward starts from); returns its
        output.

    Returns
    -------
    Steps
        ``paths`` under ``layer`` (``"weights"``, ``"layers[0].W"``), in walk order,
        ``dx_change`` and ``unscaled``.
    """
    from gradcheck.protocol.state import StateSnapshot

    start = StateSnapshot(layer)
    try:
        forward()
        after_forward = StateSnapshot(layer, include_global_rng=False)
        before = {s.path: s.saved for s in after_forward.slots
                  if s.kind == "array" and s.path and s.saved.dtype.kind == "f"}
        moves, returned = [], []
        for lr in (LEARNING_RATE, 2 * LEARNING_RATE):
            after_forward.restore_all()
            returned.append(_returned(call_backward(lr)))
            moves.append(_steps(layer, before))
        one, two = moves
        paths = tuple(p for p in one if p in two and _scales(one[p], two[p], before[p]))
        # the other arrays backward changed: parameters if forward reads them, else caches
        others = {p: before[p] - (one[p] if p in one else two[p])
                  for p in dict.fromkeys([*one, *two]) if p not in paths}
        unscaled = tuple(_read_by_forward(layer, after_forward, forward, others))
    finally:
        start.restore_all()
    # a "rate" that steps nothing is no learning rate (an ELU's alpha): dx may depend on it
    change = _dx_change(*returned)
    return Steps(paths, change if paths or unscaled else None, unscaled,
                 1 + (2 + len(others) if others else 0),
                 None if paths or unscaled else change)


def _read_by_forward(layer, state, forward, values):
    """The paths of ``values`` (``{path: value backward left there}``) that change what
    ``forward`` returns from ``state``: a parameter backward steps otherwise than in
    proportion to its rate, not a cache it rewrites (none when forward is not
    repeatable, or raises: the check's own calls report it)."""
    if not values:
        return []
    try:
        return _changes_output(layer, state, forward, values)
    except Exception:  # noqa: BLE001
        return []


def _changes_output(layer, state, forward, values):
    """:func:`_read_by_forward`, raising what forward raises."""
    outs = []
    for _ in range(2):
        state.restore_all()
        outs.append(_returned(forward()))
    if not _equal_lists(*outs):
        return []
    found = []
    for path, value in values.items():
        state.restore_all()
        arr = resolve(layer, path)
        if isinstance(arr, np.ndarray) and arr.shape == value.shape and arr.flags.writeable:
            np.copyto(arr, value, casting="unsafe")
            if not _equal_lists(outs[0], _returned(forward())):
                found.append(path)
    return found


def _equal_lists(one, two):
    return len(one) == len(two) and all(a.shape == b.shape and np.array_equal(a, b)
                                        for a, b in zip(one, two))


class StepReader:
    """Around one backward call: read each stepped array's gradient, then undo the step.

    Parameters
    ----------
    layer : object
    paths : tuple of str
        From :func:`stepped_arrays`.
    rate : float
        The learning rate backward is called with (:data:`LEARNING_RATE`, or the one the
        user gave).

    Attributes
    ----------
    grads : dict of str to ndarray
        ``{path: (before - after) / rate}`` after :meth:`__exit__` (float64).
    """

    def __init__(self, layer, paths, rate=LEARNING_RATE):
        self.layer, self.paths, self.rate = layer, paths, rate
        self.grads = {}

    def __enter__(self):
        self._held = [(p, obj, obj.copy()) for p in self.paths
                      for obj in [resolve(self.layer, p)] if isinstance(obj, np.ndarray)]
        return self

    def __exit__(self, exc_type, exc, tb):
        for path, obj, saved in self._held:
            now = resolve(self.layer, path)
            if exc_type is None and isinstance(now, np.ndarray) and now.shape == saved.shape:
                self.grads[path] = (saved.astype(np.float64)
                                    - now.astype(np.float64)) / self.rate
            if now is not obj:  # rebound (self.W = self.W - lr * dW): the same object back
                assign(self.layer, path, obj)
            np.copyto(obj, saved)
        return False


def _is_optimizer(value):
    """Whether ``value`` has a callable ``update(w, grad)`` with two positional parameters
    (an optimizer object; not a dict, a layer or a class)."""
    if isinstance(value, (type, dict, set, list, tuple, np.ndarray)) or is_layer(value):
        return False
    update = getattr(value, "update", None)
    if not callable(update):
        return False
    sig = signature(update)
    if sig is None:
        return False
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(positional) >= 2 and len(required) <= 2


def _walk(layer, objects=None):
    """``(optimizers, arrays)`` under ``layer`` and its sub-layers: ``[(owner, key, path)]``
    of the optimizers held as attributes or in a list or dict of them (``owner[key]``: the
    ``__dict__`` or the container) and ``{id(array): path}`` of the floating arrays held as
    attributes (or in their lists, tuples and dicts); ``objects``, when given, gets
    ``{path: array}`` of the same arrays.

    Read through ``vars()`` (no attribute access the sequence check's tracer records).
    """
    optimizers, arrays, seen = [], {}, set()

    def visit(obj, prefix):
        attrs = getattr(obj, "__dict__", None)
        if id(obj) in seen or not isinstance(attrs, dict):
            return
        seen.add(id(obj))
        for name, value in list(attrs.items()):
            path = prefix + name
            if isinstance(value, np.ndarray):
                if value.dtype.kind == "f":
                    arrays.setdefault(id(value), path)
                    if objects is not None:
                        objects.setdefault(path, value)
            elif is_layer(value):
                visit(value, path + ".")
            elif isinstance(value, (list, tuple, dict)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for k, v in list(items):
                    if is_layer(v):
                        visit(v, f"{path}.{k}.")
                    elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
                        arrays.setdefault(id(v), f"{path}[{k!r}]")
                        if objects is not None:
                            objects.setdefault(f"{path}[{k!r}]", v)
                    elif _is_optimizer(v) and not isinstance(value, tuple):
                        optimizers.append((value, k, f"{path}[{k!r}]"))  # self.opts[0]
            elif _is_optimizer(value):
                optimizers.append((attrs, name, path))

    visit(layer, "")
    return optimizers, arrays


def optimizer_paths(layer):
    """The paths of the optimizer objects ``layer`` holds (``"W_opt"``, ``"blocks.0.W_opt"``).

    Parameters
    ----------
    layer : object

    Returns
    -------
    tuple of str
        Attributes, of ``layer`` and of its sub-layers, whose value has a
        callable ``update(w, grad)`` with two positional parameters.
    """
    return tuple(path for _, _, path in _walk(layer)[0])


class _Recording:
    """Stands in for one optimizer during a backward call: ``update(w, grad)`` is
    ``record(w, grad)`` (:meth:`UpdateRecorder.record`); any other attribute is the
    optimizer's."""

    def __init__(self, optimizer, record):
        self._optimizer, self._record = optimizer, record

    def update(self, w, grad_wrt_w, *args, **kwargs):
        return self._record(w, grad_wrt_w)

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


class UpdateRecorder:
    """Around one backward call: record each optimizer ``update(w, grad)`` instead of it.

    Parameters
    ----------
    layer : object

    Attributes
    ----------
    grads : dict of str to ndarray
        ``{param_path: grad}`` after :meth:`__exit__` (the backward returned): the
        gradients passed to ``update``, under the path of the attribute holding ``w``
        (summed when one array is updated twice), in the order of the layer's attributes.
    unmapped : int
        ``update`` calls whose ``w`` is no array the layer holds, nor equal to exactly
        one of them (a copy), so not recorded (and given back unmoved).
    """

    def __init__(self, layer):
        self.layer = layer
        self.grads, self.unmapped = {}, 0

    def __enter__(self):
        self._objects = {}
        optimizers, self._arrays = _walk(self.layer, self._objects)
        self._grads, self._saved, self._moved = {}, {}, {}
        self._swapped = [(attrs, name, attrs[name]) for attrs, name, _ in optimizers]
        for attrs, name, optimizer in self._swapped:
            attrs[name] = _Recording(optimizer, self.record)
        return self

    def record(self, w, grad):
        """One ``update(w, grad)``: keep ``grad`` under the parameter ``w`` is, and return
        a moved copy of ``w`` (:data:`UPDATE_SHIFT`); ``w`` itself when it is none."""
        path = self._arrays.get(id(w)) or self._moved.get(id(w), (None,))[0] or self._equal(w)
        if path is None:
            self.unmapped += 1
            return w
        grad = np.array(grad, copy=True)
        self._grads[path] = self._grads[path] + grad if path in self._grads else grad
        self._saved.setdefault(path, np.array(w, copy=True))  # the weights from before
        moved = np.asarray(w) + UPDATE_SHIFT * (1 + np.abs(w))
        moved = moved.astype(np.asarray(w).dtype, copy=False)
        self._moved[id(moved)] = (path, moved)  # updated again: the same parameter
        return moved

    def __exit__(self, exc_type, exc, tb):
        for attrs, name, optimizer in self._swapped:
            attrs[name] = optimizer
        for path, saved in self._saved.items():
            self._put_back(path, saved)
        if exc_type is None:
            # in the walk's order (a backward updates its sub-layers last to first)
            self.grads = {p: self._grads[p] for p in self._arrays.values() if p in self._grads}
        self._grads, self._saved, self._moved = {}, {}, {}
        return False

    def _put_back(self, path, saved):
        """The array held at ``path`` when the call began back there, with the contents
        ``saved``."""
        original = self._objects.get(path)
        if isinstance(original, np.ndarray) and original.shape == np.shape(saved):
            if resolve(self.layer, path) is not original:
                assign(self.layer, path, original)
            np.copyto(original, saved)

    def _equal(self, w):
        """The path of the one array the layer held when the call began equal to ``w``
        (``update(self.W.copy(), g)``), or None (none, or several alike)."""
        if not isinstance(w, np.ndarray):
            return None
        found = [p for p, obj in self._objects.items()
                 if obj.shape == w.shape and np.array_equal(obj, w)]
        return found[0] if len(found) == 1 else None
