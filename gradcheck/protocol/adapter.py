"""The layer protocol: calling ``forward``/``backward`` and finding parameters.

Everything here validates what the layer returns and turns a layer's own
exception into a :class:`~gradcheck.errors.LayerCallError` that names the
layer, the target and the perturbed element.
"""

import functools
import inspect
import types
from typing import NamedTuple, Optional

import numpy as np

from gradcheck.errors import GradCheckInputError, LayerCallError, LayerProtocolError
from gradcheck.protocol.discovery import (METHOD_NAMES, accumulating_buffers, discover,
                                          kept_input_gradient, layer_method, layer_tree,
                                          method_name,
                                          plain_forward, plain_held, put_back_changed,
                                          zero_buffers)
from gradcheck.protocol.paths import assign, lookup, resolve
from gradcheck.protocol.regularization import penalty_gradients, subtract_penalty
from gradcheck.protocol.signatures import only_var_args, signature, signature_text
from gradcheck.protocol.state import _bitwise_equal


def layer_name(layer):
    """A short human-readable name for ``layer`` (its class name; a toolkit wrapper
    such as :class:`~gradcheck.protocol.calling.CallLayer` gives the wrapped one's)."""
    if isinstance(layer, type):  # a class passed for an instance (refused by LayerAdapter)
        return layer.__name__
    return lookup(layer, "_gradcheck_name") or type(layer).__name__


#: Names under which ``forward`` takes the train/eval switch (the book's ``train_flg``,
#: NNFS's ``training``, and their variants).
FLAG_NAMES = ("train_flg", "training", "train", "is_training", "train_mode", "is_train")
#: Names of the switch the other way round, true in eval mode (CMU 11-785's
#: ``forward(Z, eval=False)``, flax's ``deterministic``): given ``not train_flg``.
EVAL_FLAG_NAMES = ("eval", "is_eval", "eval_mode", "evaluation", "inference", "is_inference",
                   "test", "is_test", "testing", "deterministic")
#: Every name a train/eval switch goes by.
SWITCH_NAMES = FLAG_NAMES + EVAL_FLAG_NAMES


def flag_value(name, train_flg):
    """The value of the switch ``name`` in the mode ``train_flg`` (inverted for the names
    of :data:`EVAL_FLAG_NAMES`)."""
    return bool(train_flg) != (name in EVAL_FLAG_NAMES)


def _accepts_train_flg(forward):
    """How to pass ``train_flg``: ``"positional"``, ``"keyword"`` or ``None`` (not accepted).

    Only a parameter named as in :data:`SWITCH_NAMES` is the switch (second
    positionally, or by keyword), or the second argument of a ``forward(*args)``;
    any other second parameter (numpy-ml's ``retain_derived=True``, a ``mask``) is
    not given a boolean.
    """
    sig = signature(forward)
    if sig is None:
        return "positional"
    params = list(sig.parameters.values())
    name = flag_name(forward)
    if name is not None:
        p = sig.parameters[name]
        positional = [q for q in params if q.kind in (q.POSITIONAL_ONLY,
                                                      q.POSITIONAL_OR_KEYWORD)]
        if p.kind == p.KEYWORD_ONLY or (len(positional) > 1 and positional[1] is not p):
            return "keyword"
        return "positional"
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return "positional"
    return None


def _refused_in_binding(exc, name):
    """Whether the TypeError ``exc`` is a call of ``name`` refused for its positional
    arguments (``Dense.forward() takes 2 positional arguments but 3 were given``) before
    any line of it ran: no frame of a function called ``name`` in its traceback."""
    import re

    if not re.search(rf"\b{re.escape(name)}\(\) takes .* positional arguments? but .* "
                     r"(were|was) given", str(exc)):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == name:
            return False
        tb = tb.tb_next
    return True


def flag_name(forward):
    """The name of ``forward``'s train/eval parameter (one of :data:`SWITCH_NAMES`), or
    ``None`` when it has none (or its signature cannot be read)."""
    sig = signature(forward)
    return None if sig is None else next((n for n in SWITCH_NAMES if n in sig.parameters),
                                         None)


def switch_mode(layer, adapter, train_flg):
    """Put a layer whose ``forward`` takes no train/eval switch in the mode asked for.

    A layer that holds its mode as an attribute named as in :data:`SWITCH_NAMES`
    (``self.training``, PyTorch style; ``self.is_test``), or whose sub-layers do (a
    module tree: each child reads its own, as ``torch.nn.Module.train()`` sets them all),
    gets every one set for ``train_flg`` (the caller puts them back with
    :func:`switch_back`), and ``adapter.mode_holders`` lists them (for the sequence
    check's train-mode first call). A layer with neither has one mode: asking for eval
    mode there is worth a warning, since nothing changes.

    Parameters
    ----------
    layer : object
        The user's layer (inside a wrapper, the wrapped one).
    adapter : LayerAdapter
    train_flg : bool

    Returns
    -------
    (switched, text) : (list or None, str or None)
        ``[(object, attribute, value before)]`` of the attributes set (``None`` when none
        was); the text of a note (or warning) for the report.
    """
    holders = mode_holders(layer)
    if adapter.flag_mode is not None:  # the switch reaches the layer; its sub-layers' own
        holders = [(obj, attr) for obj, attr in holders if obj is not layer]
    adapter.mode_holders = holders
    if holders:
        switched = []
        for obj, attr in holders:
            before, value = getattr(obj, attr), flag_value(attr, train_flg)
            if bool(before) != value:
                setattr(obj, attr, value)
                switched.append((obj, attr, before))
        return (switched, _switched_text(layer, holders, train_flg,
                                         adapter.flag_mode is not None)) if switched else (
            None, None)
    if adapter.flag_mode is not None or train_flg:
        return None, None
    mode = _mode_parameter(layer_method(layer, "forward"))
    return None, (
        "train_flg=False, but forward takes no train/eval switch (a parameter named "
        f"{', '.join(SWITCH_NAMES)}) and the layer holds none as an attribute: it was checked "
        "in the one mode it has" + (
            f"; forward's `{mode}` parameter is not taken for one: pass the mode as an input, "
            f"check_layer(layer, {{'x': x, {mode!r}: ...}})" if mode else
            "; a mode inside an input (CS231n's bn_param['mode']) is set there"))


def _switched_text(layer, holders, train_flg, flag=False):
    """The ``mode-switch`` note: which attributes hold the mode, set for the check
    (``flag``: the layer's forward takes the switch, its sub-layers hold their own)."""
    names = sorted({attr for _, attr in holders})
    own = holders[0][0] is layer
    subs = len(holders) - own
    where = (f"the layer holds it as `{names[0]}`" if own else
             f"{subs} of its sub-layers hold{'s' if subs == 1 else ''} it as "
             f"{', '.join(f'`{n}`' for n in names)}")
    if own and subs:
        where += f" (and {subs} of its sub-layers too)"
    value = (f"set to {flag_value(names[0], train_flg)}" if len(names) == 1 else
             f"set for {'train' if train_flg else 'eval'} mode")
    start = ("forward takes the train/eval switch, but" if flag else
             "forward takes no train/eval switch;")
    return f"{start} {where}, {value} for the check (put back afterwards)"


def mode_attribute(layer):
    """The attribute of :data:`SWITCH_NAMES` holding a boolean (``self.training``), the
    mode of a layer whose ``forward`` takes no switch, or ``None``.

    Parameters
    ----------
    layer : object

    Returns
    -------
    str or None
    """
    return next((n for n in SWITCH_NAMES if isinstance(lookup(layer, n), (bool, np.bool_))),
                None)


def mode_holders(layer):
    """``[(object, attribute)]``: the layer and its sub-layers
    (:func:`~gradcheck.protocol.discovery.layer_tree`) that hold a mode attribute
    (:func:`mode_attribute`), the layer first.

    Parameters
    ----------
    layer : object

    Returns
    -------
    list of (object, str)
    """
    return [(obj, attr) for obj, _ in layer_tree(layer) for attr in [mode_attribute(obj)]
            if attr is not None]


def switch_back(switched):
    """Undo :func:`switch_mode` (the attributes put back in reverse order)."""
    for obj, attr, before in reversed(switched or ()):
        setattr(obj, attr, before)


def _mode_parameter(forward):
    sig = signature(forward)
    return None if sig is None else next(
        (n for n in ("mode", "phase", "stage") if n in sig.parameters), None)


_RAISED = object()


def settle_call(layer, x, train_flg):
    """Whether a layer whose ``__call__`` calls ``forward`` is checked through ``__call__``
    (:func:`~gradcheck.protocol.discovery.method_name`), decided by calling both on ``x``.

    ``__call__`` is the forward pass only when, from one state of the layer (a
    :class:`~gradcheck.protocol.state.StateSnapshot`, put back after each call), it returns
    bitwise what ``forward`` returns (from that state, or from the one ``__call__`` leaves:
    a ``__call__`` that first recomputes what forward reads, weight normalisation's
    ``self.W[...] = g * v / norm(v)``) and leaves an attribute ``forward`` alone does not
    (the input backward reads). A ``__call__`` that returns something else (``2 * forward(x)``,
    probabilities of forward's logits, ``argmax``, an eval-mode forward) or adds nothing
    is a helper: ``forward`` itself is taken
    (:func:`~gradcheck.protocol.discovery.plain_forward`, again for a layer a check under
    way took so; the caller always undoes it with
    :func:`~gradcheck.protocol.discovery.release_forward`).

    Parameters
    ----------
    layer : object
    x : object
        The check's input; anything but a floating ndarray leaves the decision to
        ``method_name`` alone.
    train_flg : bool

    Returns
    -------
    Settled
        ``note``: the text of the note saying ``__call__`` is the forward pass, or
        ``None``; ``forward_calls``: the calls made to decide (0 or 3).
    """
    if plain_held([layer]):  # settled by a check under way: this one holds it too
        plain_forward(layer)
        return Settled(None, 0)
    if method_name(layer, "forward") != "__call__":
        return Settled(None, 0)
    from gradcheck.protocol.state import StateSnapshot

    inner = next(n for n in METHOD_NAMES["forward"] if callable(lookup(layer, n)))
    args = _call_args(x)
    if args is None or not _can_switch(layer_method(layer, "forward"), getattr(layer, inner),
                                       train_flg):
        plain_forward(layer)  # not comparable, or __call__ cannot run the mode asked for
        return Settled(None, 0)
    snapshot = StateSnapshot(layer)
    try:
        by_call, call_wrote = _traced(layer_method(layer, "forward"), args, train_flg, snapshot)
        # forward from the state __call__ left: __call__ prepares what forward reads
        after_call = _traced(getattr(layer, inner), args, train_flg, snapshot, restore=False)[0]
        by_forward, forward_wrote = _traced(getattr(layer, inner), args, train_flg, snapshot)
    finally:
        snapshot.restore_all()
    if by_call is _RAISED and by_forward is _RAISED:
        return Settled(None, 3)  # both raise: the check reports the error of __call__
    extra = sorted({name for _, name in call_wrote - forward_wrote})
    if by_forward is _RAISED or (by_call is not _RAISED and extra and (
            _same_output(by_call, by_forward) or _same_output(by_call, after_call))):
        return Settled(f"forward pass: __call__, which calls {inner}, returns its output "
                       f"unchanged and keeps {', '.join(extra) or 'what it needs'} ({inner} "
                       "alone does not): called as a training loop calls the layer, layer(x)",
                       3)
    plain_forward(layer)
    return Settled(None, 3)


class Settled(NamedTuple):
    """What :func:`settle_call` decided: its note (or ``None``) and the forward calls it
    made (the report counts them with the discovery's)."""

    note: Optional[str]
    forward_calls: int


def _call_args(x):
    """The positional inputs the check calls forward with: ``x`` as a float64 array (an
    integer array or a list is converted as the check converts it), the members of a tuple
    (several inputs); ``None`` for anything else (a dict: not compared)."""
    if isinstance(x, tuple):
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return (x,)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return (arr,) if arr.ndim else None


def _can_switch(call, forward, train_flg):
    """Whether ``__call__`` can run ``forward`` in the mode asked for: it takes the switch
    itself (or ``*args``), ``forward`` takes none, or forward's default is that mode (a
    ``__call__(x)`` calling ``forward(x)`` of ``forward(x, train_flg=True)`` is the train
    pass only)."""
    if _accepts_train_flg(call) is not None or _accepts_train_flg(forward) is None:
        return True
    name = flag_name(forward)
    sig = signature(forward)
    if sig is None or name not in sig.parameters:
        return False
    default = sig.parameters[name].default
    return default is not inspect.Parameter.empty and bool(default) == flag_value(
        name, train_flg)


def _traced(fn, args, train_flg, snapshot, restore=True):
    """``(output, written)`` of ``fn(*args[, train_flg])`` from the state ``snapshot`` holds
    (``written``: :meth:`~gradcheck.protocol.state.StateSnapshot.written`; ``restore=False``:
    from the layer's state as it is), or ``(_RAISED, set())`` when it raises."""
    if restore:
        snapshot.restore_all()
    mode, name = _accepts_train_flg(fn), flag_name(fn) or "train_flg"
    flag = flag_value(name, train_flg)
    args = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)
    try:
        if mode == "keyword":
            out = fn(*args, **{name: flag})
        else:
            out = fn(*args, *((flag,) if mode == "positional" else ()))
        return _copied(out), snapshot.written()
    except Exception:  # noqa: BLE001 -- the layer's own error: the check raises it later
        return _RAISED, set()


def _copied(out):
    """``out`` with its arrays copied (a layer reusing its output buffer)."""
    if isinstance(out, (tuple, list)):
        return type(out)(_copied(o) for o in out)
    if isinstance(out, dict):
        return {k: _copied(v) for k, v in out.items()}
    return np.array(out, copy=True) if isinstance(out, np.ndarray) else out


def _same_output(a, b):
    """Whether two outputs are bitwise the same: arrays of one dtype, shape and bytes, and
    tuples, lists and dicts of such (anything else by ``is`` or ``==``)."""
    if isinstance(a, (tuple, list, dict)) or isinstance(b, (tuple, list, dict)):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(_same_output(a[k], b[k]) for k in a)
        return all(_same_output(p, q) for p, q in zip(a, b))
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 -- an object whose == does not give a bool
        return False


def describe_value(value):
    """What ``value`` is, for a message: ``a tuple (float, dict)``, ``a dict with keys 'h',
    'c'``, ``an array of dtype object``, ``NoneType``."""
    if isinstance(value, (tuple, list)):
        kinds = ", ".join(type(v).__name__ for v in value[:6]) + (", ..." if len(value) > 6
                                                                   else "")
        return f"a {type(value).__name__} ({kinds})"
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(repr, list(value)[:6]))}"
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__


class LayerAdapter:
    """Calls a layer following the protocol and validates what it returns.

    Parameters
    ----------
    layer : object
        Has ``forward(x[, train_flg])`` and ``backward(dout)`` (or another name of
        :data:`~gradcheck.protocol.discovery.METHOD_NAMES`: ML-From-Scratch's
        ``forward_pass(X, training)`` and ``backward_pass(accum_grad)``).
    train_flg : bool
        Passed to ``forward`` when its signature accepts it.

    Raises
    ------
    GradCheckInputError
        ``layer`` is a class, not an instance.
    LayerProtocolError
        ``forward`` or ``backward`` is missing or not callable.
    """

    def __init__(self, layer, train_flg):
        self.layer = layer
        self.name = layer_name(layer)
        if isinstance(layer, type):
            raise GradCheckInputError(f"got the class {self.name}, not an instance: pass "
                                      f"{self.name}(...){_ctx_hint(layer)}", layer=self.name)
        for meth in ("forward", "backward"):
            if method_name(layer, meth) is None:
                model = (" (a model whose loss(X, y) returns (loss, grads) over model.params, "
                         "CS231n's: check_function(model.loss, None, X, y))"
                         if callable(lookup(layer, "loss")) else "")
                raise LayerProtocolError(
                    f"has no callable {meth}() method; a layer needs forward(x, train_flg) "
                    "and backward(dout) (or forward_pass(X, training) and "
                    "backward_pass(accum_grad), ML-From-Scratch's; several inputs: "
                    "check_layer(layer, (x, h)); a forward/backward function pair: "
                    "check_function(forward, backward, *inputs))"
                    + model, layer=self.name)
        forward = layer_method(layer, "forward")
        self.flag_mode = _accepts_train_flg(forward)
        self._flag = flag_name(forward) or "train_flg"
        self._set_mode(train_flg)
        #: a ``forward(*args, **kwargs)`` (a decorator without :func:`functools.wraps`):
        #: whether it takes the positional flag is learnt at the first call
        #: (:meth:`_probing_forward`); the note of a flag it refused
        self._probe, self.flag_refused = only_var_args(forward), None
        self.forward_calls = 0
        self.backward_calls = 0
        #: ``[(object, attribute)]`` holding the mode of a forward without a switch
        #: (``self.training``, in the layer and its sub-layers), once :func:`switch_mode`
        #: has looked
        self.mode_holders = []
        #: accumulating gradient buffers (``gradients[...] +=``), zeroed before every backward
        self.accumulating = accumulating_buffers(layer)
        #: the layer's ``flush_gradients()`` breaks its backward: the sequence check does
        #: not call it between its two calls (:func:`gradcheck.check._parameters`)
        self.no_flush = False
        #: NNFS-style regularization added by backward: its gradient is taken out again
        self.regularized = bool(penalty_gradients(layer))
        #: the name of the method of :attr:`gradient_owner` that computes the parameter
        #: gradients after backward (EpyNN's ``compute_gradients()``), called after every
        #: backward once set: found by the discovery
        #: (:func:`~gradcheck.protocol.discovery.discover_by_calling`) or named by
        #: ``check_layer(gradient_method=)``
        self.gradient_method = None
        #: the parameters whose gradients the discovery found only after calling it, found
        #: by its name (empty: ``gradient_method=`` named it)
        self.gradient_method_found = ()
        #: the layer it is called on (the wrapped layer of a CallLayer)
        self.gradient_owner = layer
        #: the parameters (paths under :attr:`layer`) the gradient method also changes (an
        #: update inside ``compute_gradients()``): put back after every call of it
        self.gradient_method_keeps = ()
        #: whether x is a target (``wrt`` without it: a backward that returns no dx, a
        #: model's first layer's, is accepted, zeros standing for it), and whether one did
        self.dx_wanted, self.dx_missing = True, False

    def _set_mode(self, train_flg):
        """``train_flg`` and the arguments ``forward`` gets for it (none without a flag)."""
        self.train_flg = bool(train_flg)
        self._args, self._kwargs = (), {}
        if self.flag_mode == "positional":
            self._args = (flag_value(self._flag, self.train_flg),)
        elif self.flag_mode == "keyword":
            self._kwargs = {self._flag: flag_value(self._flag, self.train_flg)}

    def in_mode(self, train_flg):
        """This adapter with ``forward`` called in the mode ``train_flg``, its calls counted
        from 0: ``LayerAdapter(layer, train_flg)`` without looking at the layer again (the
        sequence check's train-mode first call of an eval-mode check).

        Parameters
        ----------
        train_flg : bool

        Returns
        -------
        LayerAdapter
        """
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._set_mode(train_flg)
        other.forward_calls = other.backward_calls = 0
        return other

    # -- raw calls (used in the hot loop: no validation beyond the minimum) --
    def bound_forward(self):
        """``f(x) = layer.forward(x, train_flg)``, bound once (not counted: the caller counts).

        The hot loop's call: the bound method, or a :func:`functools.partial` of
        the keyword flag (no Python frame of the toolkit's between the loop and
        the layer); a positional flag follows ``x``, in a closure.
        """
        if self._probe:
            return self._probing_forward
        layer, args, kwargs = self.layer, self._args, self._kwargs
        name = method_name(layer, "forward")
        if not _same_at_every_lookup(layer, name):  # a property, a __getattr__: per call
            return lambda x: getattr(layer, name)(x, *args, **kwargs)
        forward = layer_method(layer, "forward")
        if args:
            return lambda x: forward(x, *args)
        if kwargs:
            return functools.partial(forward, **kwargs)
        return forward

    def _probing_forward(self, x):
        """``forward(x, train_flg)`` of a ``forward(*args, **kwargs)``, or ``forward(x)``
        when that call is refused for its number of positional arguments (a TypeError
        raised in binding, no frame of the layer's ``forward`` run: its own errors are
        raised); the flag is then never passed again, and :attr:`flag_refused` says so."""
        name = method_name(self.layer, "forward")
        forward = getattr(self.layer, name)
        if not self._probe:
            return forward(x, *self._args, **self._kwargs)
        try:
            return forward(x, *self._args)
        except TypeError as exc:
            if not _refused_in_binding(exc, name):
                raise
            self.flag_refused = (
                f"forward{signature_text(forward)} (a decorator without functools.wraps) "
                f"refused train_flg as its second positional argument ({exc}): called as "
                "forward(x), in the one mode it has")
        self._probe, self._args, self.flag_mode = False, (), None
        return forward(x)

    def raw_forward(self, x):
        """``layer.forward(x, train_flg)`` as the layer returns it (counted)."""
        self.forward_calls += 1
        return self.bound_forward()(x)

    def forward(self, x, target=None, index=None):
        """Call ``forward`` and return its output as an ndarray (not copied).

        Raises
        ------
        LayerCallError
            ``forward`` raised.
        LayerProtocolError
            The output is not an array or a number (a tuple, ``None``, ...).
        """
        try:
            out = self.raw_forward(x)
        except GradCheckInputError:
            raise
        except (Exception, SystemExit) as exc:  # the layer's own error: keep its traceback
            raise LayerCallError(f"forward() raised {type(exc).__name__}: {exc}",
                                 layer=self.name, target=target, index=index) from exc
        return self.validate_output(out, target)

    def validate_output(self, out, target=None):
        if out is None and isinstance(lookup(self.layer, "output"), np.ndarray):
            out = self.layer.output  # forward keeps self.output and returns None (NNFS)
        if isinstance(out, np.ndarray):
            # a subclass (np.matrix keeps 2 dimensions through reshape(-1)) as a plain array
            arr = out if type(out) is np.ndarray else out.view(np.ndarray)
        elif isinstance(out, (float, int, np.floating, np.integer)) and not isinstance(out, bool):
            arr = np.asarray(out, dtype=np.float64)
        else:
            raise LayerProtocolError(
                f"forward() returned {describe_value(out)}, expected one ndarray (a layer "
                "with several outputs is checked with its inputs as a tuple: "
                "check_layer(layer, (x,)) splits a tuple or dict output and passes backward "
                "one dout per output, a dict of them for a dict; members that are no array, "
                "a (loss, cache) tuple's cache, are left out)",
                layer=self.name, target=target)
        if arr.dtype.kind not in "fc":
            raise LayerProtocolError(
                f"forward() returned an array of dtype {arr.dtype}, expected floating point"
                + (" (an object array: forward returned something numpy could not make a "
                   "number of, a tuple of an array and a cache?)" if arr.dtype.kind == "O"
                   else ""),
                layer=self.name, target=target)
        return arr

    def backward(self, dout, x_shape, x_dtype):
        """Call ``backward`` on a fresh copy of ``dout``; return ``(dx, dout_modified)``.

        Raises
        ------
        LayerCallError
            ``backward`` raised.
        LayerProtocolError
            ``dx`` is ``None``, not an ndarray, of the wrong shape or dtype.
        """
        dout_copy = dout.copy()
        self.backward_calls += 1
        if self.accumulating:
            zero_buffers(self.layer, self.accumulating)
        try:
            dx = call_without_dout(layer_method(self.layer, "backward"), (dout_copy,))
        except GradCheckInputError:
            raise  # a toolkit wrapper's own protocol error (CallLayer)
        except (Exception, SystemExit) as exc:
            missing = isinstance(exc, TypeError) and missing_arguments(
                layer_method(self.layer, "backward"), (dout_copy,))
            if missing:
                raise unpassed_error(self.name, missing) from exc
            raise LayerCallError(f"backward() raised {type(exc).__name__}: {exc}",
                                 layer=self.name, target="x") from exc
        if self.gradient_method is not None:
            self.compute_gradients()
        if self.regularized:
            subtract_penalty(self.layer)
        # the bytes first (a few µs; equal_nan's comparison is ~10 µs at 2000 elements)
        modified = not (_bitwise_equal(dout_copy, dout)
                        or np.array_equal(dout_copy, dout, equal_nan=True))
        kept = kept_input_gradient(self.layer) if dx is None else None
        if isinstance(kept, np.ndarray):
            dx = kept  # kept in self.dinputs, None returned (NNFS)
        if isinstance(dx, (np.floating, float)) and not isinstance(dx, bool) \
                and tuple(x_shape) == ():
            dx = np.asarray(dx)  # numpy arithmetic on a 0-d array returns a scalar
        if dx is None and not self.dx_wanted:
            self.dx_missing = True  # x is not checked: only the parameters' gradients count
            dx = np.zeros(x_shape, dtype=x_dtype)
        if dx is None:
            raise LayerProtocolError(
                "backward() returned None; it must return dx, the gradient with respect "
                "to the input, an ndarray of the input's shape (or keep it in self.dinputs); "
                "a layer that computes no dx (a model's first layer) is checked over its "
                "parameters alone with wrt=[...] naming them, without 'x'",
                layer=self.name, target="x")
        if not isinstance(dx, np.ndarray):
            hint = _tuple_hint(self.layer, dx, x_shape) if isinstance(dx, tuple) else ""
            raise LayerProtocolError(
                f"backward() returned {type(dx).__name__}, expected an ndarray of shape "
                f"{x_shape}{hint}", layer=self.name, target="x")
        if dx.shape != tuple(x_shape):
            raise LayerProtocolError(
                f"backward() returned dx of shape {dx.shape}, expected the input's shape "
                f"{tuple(x_shape)}", layer=self.name, target="x")
        if dx.dtype.kind != "f":
            raise LayerProtocolError(
                f"backward() returned dx of dtype {dx.dtype}, expected a floating dtype "
                f"(the input is {x_dtype})", layer=self.name, target="x")
        return dx, modified


    def compute_gradients(self):
        """Call the layer's :attr:`gradient_method` (after a backward, as the training loop
        does before its update); the parameters it also changes
        (:attr:`gradient_method_keeps`) are put back.

        Raises
        ------
        LayerCallError
            The method raised.
        """
        name = self.gradient_method
        held = {p: resolve(self.layer, p) for p in self.gradient_method_keeps}
        held = {p: (a, a.copy()) for p, a in held.items() if isinstance(a, np.ndarray)}
        try:
            getattr(self.gradient_owner, name)()
        except GradCheckInputError:
            raise
        except (Exception, SystemExit) as exc:
            raise LayerCallError(
                f"{name}() (called after backward to compute the parameter gradients) raised "
                f"{type(exc).__name__}: {exc}", layer=self.name, target="parameters") from exc
        finally:  # also when it raised after a step
            put_back_changed(self.layer, held)


def _ctx_hint(cls):
    """How to check a torch.autograd.Function-style class (static ``forward(ctx, ...)``
    and ``backward(ctx, dout)``), or ``""``."""
    from gradcheck.protocol.calling import takes_ctx

    if not takes_ctx(getattr(cls, "forward", None), getattr(cls, "backward", None)):
        return ""
    name = cls.__name__
    return (f"; its forward(ctx, ...) and backward(ctx, ...) are torch.autograd.Function "
            f"style: check them with check_function({name}.forward, {name}.backward, "
            "*inputs), a fresh context given to each forward and its backward")


def call_without_dout(backward, douts):
    """``backward(*douts)``, or ``backward()`` scaled by the one ``dout`` when it takes no
    argument at all and the output is a scalar (``SoftmaxCrossEntropy.backward()``: a
    terminal loss that knows its upstream gradient is 1; the check's ``dout`` is 1 but for
    the sequence check's ``backward(2 * dout)``).

    Parameters
    ----------
    backward : callable
    douts : tuple of ndarray

    Returns
    -------
    object
        What ``backward`` returned (an ndarray or a tuple of them scaled).
    """
    if len(douts) != 1 or np.size(douts[0]) != 1 or not _takes_no_argument(backward):
        return backward(*douts)
    scale = np.asarray(douts[0]).reshape(-1)[0]
    grads = backward()
    if isinstance(grads, (tuple, list)):
        return type(grads)(None if g is None else np.asarray(g) * scale for g in grads)
    return None if grads is None else np.asarray(grads) * scale


def _tuple_hint(layer, dx, x_shape):
    """Why a tuple ``backward`` returned was not read as ``(dx, dW, db)``: its source,
    where that is read from, could not be (a class made by ``exec``, in a notebook cell
    that was not saved, a compiled module); else how several inputs are passed."""
    from gradcheck.protocol.signatures import source_of

    first = dx[0] if dx else None
    if isinstance(first, np.ndarray) and first.shape == tuple(x_shape):
        if source_of(layer_method(layer, "backward")) is None:
            return (" (it returned dx first and more after it: which parameter each gradient "
                    "is of is read from backward's source, which could not be read here -- a "
                    "class made by exec or python -c, a compiled module; define the layer in "
                    "a file, or keep the parameter gradients as attributes, self.dW)")
    return (" (a backward returning one gradient per input is checked with the inputs as a "
            "tuple: check_layer(layer, (x, ...)))")


def missing_arguments(fn, args, kwargs=None):
    """The required parameters of ``fn`` that ``fn(*args, **kwargs)`` leaves unfilled
    (``backward(self, dout, scale)`` called as ``backward(dout)``: ``["scale"]``).

    Parameters
    ----------
    fn : callable
    args : tuple
    kwargs : dict, optional

    Returns
    -------
    list of str
        Empty when the call binds or the signature cannot be read.
    """
    sig = signature(fn)
    if sig is None:
        return []
    try:
        bound = sig.bind_partial(*args, **(kwargs or {})).arguments
    except TypeError:
        return []  # too many arguments, or an unknown keyword: no parameter left unfilled
    return [p.name for p in sig.parameters.values() if p.name not in bound
            and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def unpassed_error(layer, missing, why=""):
    """The :class:`GradCheckInputError` for a ``backward`` whose required parameters
    ``missing`` the check cannot fill: it names the layer, the method and the parameters,
    and how to pass them (``check_layer(..., backward_kwargs=...)``).

    Parameters
    ----------
    layer : str
        The layer's name.
    missing : list of str
    why : str
        Appended after "(no default)".

    Returns
    -------
    GradCheckInputError
    """
    shown = ", ".join(repr(m) for m in missing)
    example = ", ".join(f"{m!r}: ..." for m in missing)
    return GradCheckInputError(
        f"backward takes {shown} (no default){why}, which the check cannot guess; pass "
        f"it for every backward call with "
        f"check_layer(layer, x, backward_kwargs={{{example}}})", layer=layer,
        target=", ".join(missing))


def _takes_no_argument(fn):
    sig = signature(fn)
    return sig is not None and not any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        for p in sig.parameters.values())


def _same_at_every_lookup(layer, name="forward"):
    """Whether ``layer.<name>`` gives the same callable at every lookup, so it can be
    bound once: a function of the class (or a static/class method) or an object in the
    instance's ``__dict__`` (restored before every call), with the default attribute
    lookup. Not a property (which may build a function of the current parameters) or
    anything a ``__getattr__``/``__getattribute__`` of the layer's provides."""
    cls = type(layer)
    if cls.__getattribute__ is not object.__getattribute__:
        return False
    try:
        static = inspect.getattr_static(layer, name)
    except AttributeError:  # provided by __getattr__
        return False
    if name in getattr(layer, "__dict__", {}):
        return True
    return isinstance(static, (types.FunctionType, staticmethod, classmethod))


def get_attr(layer, name, default=None):
    """``layer.name``, ``layer.attr[key]`` for ``attr['key']``, a dotted path ``blocks.0.W``
    (see :func:`gradcheck.protocol.paths.resolve`)."""
    return resolve(layer, name, default)


def get_grad(layer, grad_path, param_path):
    """The gradient at ``grad_path``, in the shape of the parameter at ``param_path``.

    A gradient kept with its reduced axes (``np.sum(dout * xhat, axis=0,
    keepdims=True)``: a ``(1, D)`` ``dgamma`` for a ``(D,)`` ``gamma``, as in
    CS231n's batch and layer norm, whose own checker broadcasts it) holds the
    same elements in the same order: it is read as its reshape. Anything else
    is returned as it is (the check's validation reports a wrong shape).

    Parameters
    ----------
    layer : object
    grad_path, param_path : str
        Paths as for :func:`get_attr`.

    Returns
    -------
    object
        The gradient, an ndarray view in the parameter's shape when it only
        differs from it by axes of length 1.
    """
    grad = get_attr(layer, grad_path)
    if isinstance(grad, np.ndarray):
        shape = np.shape(get_attr(layer, param_path))
        if grad.shape != shape and keepdims_of(grad.shape, shape):
            return grad.reshape(shape)
    return grad


def keepdims_of(shape, target):
    """Whether ``shape`` is ``target`` with axes of length 1 added or removed (same size)."""
    return tuple(n for n in shape if n != 1) == tuple(n for n in target if n != 1)


def set_attr(layer, name, value):
    """Set the attribute at ``name`` (see :func:`get_attr`)."""
    assign(layer, name, value)


def discover_params(layer, exclude=()):
    """Trainable parameters ``{param_path: grad_path}`` of a layer after one ``backward``.

    Every convention of :mod:`gradcheck.protocol.discovery` (without the
    knowledge of what ``forward`` writes; :func:`gradcheck.check.check_layer`
    discovers with it).

    Parameters
    ----------
    layer : object
    exclude : iterable of str
        Attribute paths never taken as parameters.

    Returns
    -------
    dict
    """
    return discover(layer, exclude=exclude).params


def check_params_mapping(layer, params):
    """Validate an explicit ``params={"gamma": "dgamma", ...}`` mapping.

    Raises
    ------
    GradCheckInputError
        Not a mapping of str to str, or a parameter attribute that is not an ndarray.
    """
    name = layer_name(layer)
    if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise GradCheckInputError(
            f"params must be a dict mapping parameter attribute names to gradient attribute "
            f"names, e.g. {{'W': 'dW'}}; got {params!r}", layer=name)
    for p in params:
        if p == "x":
            raise GradCheckInputError("'x' is reserved for the input; rename the parameter",
                                      layer=name, target=p)
        value = get_attr(layer, p)
        if not isinstance(value, np.ndarray) and not (
                isinstance(value, (float, np.floating)) and not isinstance(value, bool)):
            raise GradCheckInputError(
                f"params names attribute {p!r}, which is "
                f"{'missing' if value is None else type(value).__name__}, not an ndarray or a float",
                layer=name, target=p)
    return dict(params)
