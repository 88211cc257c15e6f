"""Parameter discovery: which attributes are parameters, where their gradients are,
and what was considered and *not* checked, with the reason.

One job: after one ``forward``/``backward`` pair, walk the layer (and its
sub-layers) and name

* the parameters and their gradients (``{param_path: grad_path}``), under
  every convention met in numpy layer code:

  - ``p`` / ``dp``, ``p_grad``, ``grad_p`` (``W``/``dW``, ``weight``/
    ``weight_grad``, ``weights``/``dweights``, ``biases``/``dbiases``), for
    ndarrays and for scalar parameters (a Python float or a 0-d array);
  - ``params`` / ``grads`` dicts (the first book's networks) and lists (the
    second book's layers, ``self.grads[0][...] = dW``; a parameter object in
    two list slots is one tied target whose gradient is the sum of both
    slots, named ``"grads[0]+grads[2]"``);
  - ``parameters`` / ``gradients`` dicts where ``backward`` accumulates with
    ``+=`` (numpy-ml): those buffers are *accumulating* and zeroed before
    every ``backward`` of the check; so are Torch7's ``gradWeight`` /
    ``gradBias`` beside ``weight`` / ``bias`` (``accGradParameters`` adds);
  - sub-layers (attributes that are layers, lists/tuples/dicts of layers),
    searched recursively, with dotted names (``blocks.0.W``); an array
    already found under another name (``Sequential``'s ``W_0``) is one target;

* every array or scalar attribute considered and not taken as a parameter,
  with the reason (``"written by forward -> state, not a parameter"``,
  ``"integer"``, ``"no gradient (looked for dW, W_grad, grad_W)"``).

An attribute that ``forward`` *rebinds* is state or cache, never a parameter:
a recurrent layer's last hidden state ``h`` beside its ``dh`` must not become a
phantom target.

Parameters and gradients are named by paths (``"params['W1']"``, ``"blocks.0.W"``,
``"a+b"`` of a tied weight's gradient), read and written by
:mod:`gradcheck.protocol.paths`.
"""

import collections
import inspect
import re
import types
from dataclasses import dataclass, field

import numpy as np

from gradcheck.protocol.paths import (_MISSING, _bracket_end, _bracket_key, _memory_order,
                                      _step, _steps, assign, attr_path, attributes, key_path,
                                      lookup, property_aliases, resolve, split_path,
                                      view_index)
from gradcheck.protocol.state import _owner
from gradcheck.protocol.signatures import (callable_without_arguments, positional_parameters,
                                           signature)

__all__ = ["resolve", "assign", "lookup", "key_path", "attr_path", "split_path", "is_layer", "METHOD_NAMES", "method_name", "layer_method",
           "grad_candidates", "Discovery", "discover", "rebound", "owner_key", "move_params",
           "accumulating_buffers", "zero_buffers", "CONTAINERS", "INPUT_GRAD_NAMES",
           "kept_input_gradient", "flush_accumulated", "param_object", "PARAM_OBJECT_NAMES",
           "torch7_grad_name", "prefer_views", "plain_forward", "release_forward",
           "plain_held", "grad_key", "gradient_methods", "with_gradient_method",
           "gradient_method_note",
           "GRADIENT_METHOD_VERBS", "GRADIENT_METHOD_WORDS", "NEVER_CALLED_WORDS",
           "said_names", "shaped_like", "pair_by_shape", "FAILING_NOTES", "STEPPED_REASON",
           "stepped_without_rate", "put_back_changed", "AMBIGUOUS_REASON", "names_parameter",
           "name_tokens"]

#: Attribute names of data a layer holds, never trainable: no "no parameter found" warning.
DATA_NAMES = ("t", "y", "label", "labels", "target", "targets", "y_true", "mask")

#: Names of running statistics and buffers a layer keeps (eval-mode forward does not write
#: them): listed as not checked, no "no gradient found" warning.
_STATISTICS = re.compile(r"running|moving|mean|var|std|avg|ema|buffer|mask|const", re.I)

#: (parameter container, gradient container, accumulating) attribute names.
CONTAINERS = (("params", "grads", False), ("parameters", "gradients", True))

#: Other gradient containers tried when the first one is missing (``params`` beside
#: ``gradients``, ``dparams``, ...).
CONTAINER_GRADS = {"params": ("gradients", "dparams", "params_grad", "grad_params"),
                   "parameters": ("grads", "dparameters", "parameters_grad")}

_INPUT = "the input"
_BACKWARD = "written by backward -> a gradient or a cache, not a parameter"
_FORWARD = "written by forward -> state, not a parameter"
_PER_CALL_LAYERS = ("sub-layers made anew by forward -> state (their parameters are this "
                    "layer's own, their gradients added up by its backward)")


def _with_properties(obj, attrs):
    """``attrs`` with an array held under a private name and read through a property
    (``self._W``, ``@property W``) under the property's name, when the gradient goes by
    that one (``dW``) and not by the private one: the parameter ``W`` the user knows, read
    and written through the property (:func:`~gradcheck.protocol.paths.assign` writes a property without a
    setter to the attribute it returns)."""
    aliases = property_aliases(obj, attrs)
    if not aliases:
        return attrs
    out = dict(attrs)
    for prop, held in aliases.items():
        if any(c in attrs for c in grad_candidates(prop)) and not any(
                c in attrs for c in grad_candidates(held)):
            out = {(prop if k == held else k): v for k, v in out.items()}
    return out


def _holds_layers(value):
    """Whether ``value`` is a layer or a list, tuple or dict holding one."""
    if isinstance(value, dict):
        value = list(value.values())
    return is_layer(value) or (isinstance(value, (list, tuple)) and any(
        is_layer(v) for v in value))
#: The not-checked reason of state (:func:`gradcheck.check` looks for it).
STATE_REASON = _FORWARD


#: The names a layer's two passes go by, in the order tried: the book's ``forward`` /
#: ``backward``, ML-From-Scratch's ``forward_pass(X, training)`` /
#: ``backward_pass(accum_grad)``, and Torch7's ``updateOutput(input)`` /
#: ``updateGradInput(input, gradOutput)`` (with ``accGradParameters``: :func:`layer_method`).
METHOD_NAMES = {"forward": ("forward", "forward_pass", "updateOutput"),
                "backward": ("backward", "backward_pass", "updateGradInput")}


def method_name(obj, role):
    """The name under which ``obj`` has its ``role`` pass, or ``None``.

    Parameters
    ----------
    obj : object
    role : {"forward", "backward"}

    Returns
    -------
    str or None
        The first name of :data:`METHOD_NAMES` ``[role]`` that is a callable
        attribute of ``obj``; for the forward pass ``"__call__"`` when the class's
        ``__call__`` calls that method (:func:`_calls_through`).
    """
    name = next((n for n in METHOD_NAMES[role] if callable(lookup(obj, n))), None)
    if (role == "forward" and name is not None and id(obj) not in _PLAIN_FORWARD
            and _calls_through(obj, name)):
        return "__call__"
    return name


#: ``{id(layer): (layer, count)}`` of the layers whose ``__call__`` calls ``forward`` but is
#: not their forward pass for the checks under way (:func:`plain_forward`, once per check: a
#: check of the layer inside another, or in another thread, releases only its own); the
#: layer is held, so its ``id`` is not reused while it is here.
_PLAIN_FORWARD = {}


def plain_forward(obj):
    """Take ``obj``'s own forward method, not a ``__call__`` that calls it, as its forward
    pass (:func:`method_name`) until as many :func:`release_forward`: its ``__call__``
    returns something else (a prediction) or leaves nothing backward needs that forward
    does not (:func:`gradcheck.protocol.adapter.settle_call`)."""
    _PLAIN_FORWARD[id(obj)] = (obj, _PLAIN_FORWARD.get(id(obj), (obj, 0))[1] + 1)


def release_forward(obj):
    """Undo one :func:`plain_forward` (nothing when ``obj`` is not under it)."""
    _, count = _PLAIN_FORWARD.get(id(obj), (obj, 0))
    if count > 1:
        _PLAIN_FORWARD[id(obj)] = (obj, count - 1)
    else:
        _PLAIN_FORWARD.pop(id(obj), None)


def plain_held(objects):
    """The ones of ``objects`` under :func:`plain_forward` (a parallel worker's copy of the
    layer registers its own copies of them)."""
    return [obj for obj in objects if id(obj) in _PLAIN_FORWARD]


def _calls_through(obj, name):
    """Whether ``type(obj).__call__`` is a Python function of the layer's own that calls
    ``self.<name>`` (``def __call__(self, x): self.x = x; return self.forward(x)``).

    A training loop calls such a layer as ``layer(x)``: what ``__call__`` keeps beside
    ``forward`` (the input backward reads) is left only by calling it, so the check
    calls it as its forward pass (a ``__call__(*args, **kwargs)`` with the signature
    of the method it calls: :func:`_through_call`). Naming ``forward`` makes it a
    candidate only: a check calls both on its input first and takes ``forward`` itself
    when ``__call__`` returns something else or keeps nothing more
    (:func:`gradcheck.protocol.adapter.settle_call`, :func:`plain_forward`).
    """
    if isinstance(obj, type):
        return False
    call = getattr(type(obj), "__call__", None)
    return isinstance(call, types.FunctionType) and name in call.__code__.co_names


def layer_method(obj, role):
    """``obj``'s ``role`` pass (``"forward"`` or ``"backward"``) as a callable, or ``None``
    (see :func:`method_name`)."""
    name = method_name(obj, role)
    if name == "updateGradInput":
        return _torch7_backward(obj)
    if name == "__call__":
        return _through_call(obj)
    return None if name is None else getattr(obj, name)


def _through_call(obj):
    """``obj.__call__`` as the forward pass (:func:`_calls_through`). A ``__call__(*args,
    **kwargs)`` passing them on hides the inputs and the train/eval switch: it is called
    through a function that carries the signature of the method it calls."""
    call = getattr(obj, "__call__")  # the instance's own first (the gate counts calls so)
    if not type(obj).__call__.__code__.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        return call
    inner = next(n for n in METHOD_NAMES["forward"] if callable(lookup(obj, n)))

    def forward(*args, **kwargs):
        return getattr(obj, "__call__")(*args, **kwargs)

    sig = signature(getattr(obj, inner))
    if sig is not None:
        forward.__signature__ = sig
    return forward


def _torch7_backward(obj):
    """Torch7's ``nn.Module:backward(input, gradOutput, scale)`` of a module that has only
    the two halves: ``updateGradInput(input, gradOutput)`` (its result, ``gradInput``,
    returned), then ``accGradParameters(input, gradOutput, 1)`` when the module has one
    (it adds into ``gradWeight``/``gradBias``: :func:`accumulating_buffers`). The callable
    carries ``updateGradInput``'s signature, so the inputs it takes first are found by name
    (:func:`gradcheck.protocol.calling.inputs_first`)."""
    update, acc = getattr(obj, "updateGradInput"), lookup(obj, "accGradParameters")

    def backward(*args):
        grad_input = update(*args)
        if callable(acc):
            acc(*args, *((1,) if _positional_count(acc) > len(args) else ()))
        return grad_input

    sig = signature(update)
    if sig is not None:
        backward.__signature__ = sig
    return backward


def _positional_count(fn):
    """How many positional parameters ``fn`` takes without a default (0 when unknown)."""
    return len(positional_parameters(fn, required=True))


#: Types whose instances have no attributes of their own, so never a layer's methods.
_NEVER_LAYERS = frozenset({np.ndarray, int, float, complex, bool, str, bytes, type(None),
                           np.float64, np.float32, np.int64, np.bool_})


def is_layer(obj):
    """Whether ``obj`` follows the layer protocol (a callable forward and backward pass,
    under one of the names of :data:`METHOD_NAMES`)."""
    if type(obj) in _NEVER_LAYERS:  # the common case in a walk of a layer's attributes
        return False
    return (not isinstance(obj, type) and method_name(obj, "forward") is not None
            and method_name(obj, "backward") is not None)


def grad_candidates(name):
    """Gradient attribute names tried for a parameter ``name``, in order (``dLdW``: CMU
    11-785's ``mytorch``; ``gradWeight`` for ``weight``: Torch7's, :func:`torch7_grad_name`).

    The one name-pairing rule: it pairs attribute names (``W``/``dW``), the keys of a
    parameter dict with those of a gradient dict under any name (EpyNN's ``p['W']`` /
    ``g['dW']``: :func:`grad_key`) and, for a path, its last step: ``blocks.0.W`` ->
    ``blocks.0.dW``; a dict entry ``p['W']`` -> ``dp['W']``, ``p_grad['W']``, ... and
    ``<dict>['dW']`` (the entry's own gradient name in another dict).

    Each spelling also private, after the public ones: a leading underscore (``_dgamma``,
    ``_gamma_grad``, ``_grad_W``); a private parameter ``_W`` also by its bare name
    (``_dW``). An unknown affix on the parameter's name (``W_d``, ``Wx_d``) is no
    spelling here: the rule pairs by name alone, and ``b_d`` may be a decoder's bias; it is
    evidence only for an array of the parameter's shape (:func:`names_parameter`).
    """
    if name.endswith("]"):
        start = _subscript_start(name)
        if start:
            head, sub = name[:start], name[start:]
            key = _bracket_key(sub[1:-1])
            return [c + sub for c in grad_candidates(head)] + (
                [f"<dict>[{'d' + key!r}]"] if isinstance(key, str) else [])
    if "." in name:
        head, _, last = name.rpartition(".")
        return [f"{head}.{c}" for c in grad_candidates(last)]
    public = _public_grad_names(name)
    bare = name.lstrip("_")
    private = ["_" + c for c in public] + (
        ["_" + c for c in _public_grad_names(bare)] if bare and bare != name else [])
    return list(dict.fromkeys(public + private))


def _public_grad_names(name):
    """:func:`grad_candidates` of an attribute name, without the private spellings."""
    return ["d" + name, "d_" + name, name + "_grad", "grad_" + name, "dLd" + name,
            torch7_grad_name(name), *[f.format(name) for f in _MORE_GRAD_NAMES]]


#: Gradient spellings met in numpy layer code besides ``dW``, ``W_grad``, ``grad_W``,
#: ``dLdW``, ``gradW``: ``W_gradient``, ``weights_gradient``, ``gW``, ``delta_W``,
#: ``W_delta``, ``nabla_W``, ``dL_dW``, ``dJ_dW``, ``dEdW``, ``Wgrad``. A suffix as short
#: as ``W_d`` or ``W_g`` is no name rule (``b_d``: a decoder's bias, ``W_g``: a gate's
#: weights); an array backward writes of an unpaired parameter's shape, its name holding
#: the parameter's, is taken by shape instead (:func:`pair_by_shape`).
_MORE_GRAD_NAMES = ("{}_gradient", "g{}", "delta_{}", "{}_delta", "nabla_{}", "dL_d{}",
                    "dJ_d{}", "dEd{}", "{}grad")


def said_names(names, shown=6):
    """Gradient names tried, as a message says them: the first ``shown``, then how many
    more of :func:`grad_candidates` (a dict entry's ``<dict>['dW']`` always said), the
    private spellings (``_dW`` beside ``dW``) said once for all.

    Parameters
    ----------
    names : list of str
        The gradient names tried, :func:`grad_candidates`' order.
    shown : int
        How many to say by name.

    Returns
    -------
    str
    """
    every = set(names)
    public = [n for n in names if _unprivate(n) not in every]
    head = list(public[:shown]) + [n for n in public[shown:] if n.startswith("<dict>")]
    more = len(public) - len(head)
    private = " (each also with a leading _)" if len(public) < len(names) else ""
    return ", ".join(head) + (f" and {more} more spellings" if more > 0 else "") + private


def _unprivate(name):
    """``name`` without the leading ``_`` of its last step (``blocks.0._dW`` ->
    ``blocks.0.dW``), or ``None`` when it has none."""
    head, dot, leaf = name.rpartition(".")
    return head + dot + leaf[1:] if leaf.startswith("_") else None


def _subscript_start(path):
    """The index of the ``[`` opening the subscript that ends ``path``, or 0."""
    i, start = 0, 0
    while i < len(path):
        if path[i] == "[":
            start, i = i, _bracket_end(path, i)
        i += 1
    return start if _bracket_end(path, start) == len(path) - 1 else 0


def grad_key(grads, key):
    """The key of ``key``'s gradient in the dict ``grads``: ``key`` itself (``params['W']``
    beside ``grads['W']``), else the first of its gradient names there
    (:func:`grad_candidates`: EpyNN's ``p['W']`` beside ``g['dW']``); ``key`` when
    neither is there.

    Parameters
    ----------
    grads : dict
        The gradient dict.
    key : hashable
        A key of the parameter dict.

    Returns
    -------
    hashable
    """
    if not isinstance(grads, dict) or not isinstance(key, str) or key in grads:
        return key
    return next((c for c in grad_candidates(key) if c in grads), key)


def torch7_grad_name(name):
    """Torch7's gradient name of a parameter: ``weight`` -> ``gradWeight``, ``bias`` ->
    ``gradBias``. ``accGradParameters`` adds into it (``+=``) and ``zeroGradParameters``
    zeroes it: an accumulating buffer (:func:`accumulating_buffers`)."""
    return "grad" + name[:1].upper() + name[1:]


#: Words a method's name needs, one of each, to be taken as computing the parameter
#: gradients after ``backward`` (EpyNN's ``compute_gradients()``, ``calc_grads``,
#: ``calculateGradients``): a verb that says it computes and a gradient word.
GRADIENT_METHOD_VERBS = frozenset({"compute", "calc", "calculate"})
GRADIENT_METHOD_WORDS = frozenset({"grad", "grads", "gradient", "gradients"})

#: Words that keep a method from ever being called by the check, whatever else its name
#: says (``update_parameters``, ``compute_gradients_and_step``, ``zero_grad``).
NEVER_CALLED_WORDS = frozenset({"update", "step", "apply", "zero", "reset", "flush", "train",
                                "clear", "set", "init", "fit", "optimize", "optimise",
                                "learn", "descend", "save", "load",
                                # a finite-difference helper (compute_numerical_gradients,
                                # calc_grad_approx, check_gradients): no analytic gradient
                                "numerical", "numeric", "finite", "approx", "approximate",
                                "estimate", "estimated", "check", "checking", "fd",
                                "difference", "differences"})


def _name_words(name):
    """The lower-case words of a snake_case or camelCase name, as a set."""
    return set(name_tokens(name))


def gradient_methods(layer, verb=True, needing_arguments=False):
    """Names of the methods of ``layer``'s class that compute its parameter gradients
    after ``backward`` (EpyNN: ``backward(dX)`` fills caches, ``compute_gradients()``
    fills ``self.g`` from them, ``update_parameters()`` steps).

    A method qualifies when it is a public function of the class (not an instance
    attribute, a property or a static method), callable with no argument, and its name
    holds a word of :data:`GRADIENT_METHOD_VERBS` and one of
    :data:`GRADIENT_METHOD_WORDS` and none of :data:`NEVER_CALLED_WORDS`
    (``get_gradients`` reads, ``update_parameters`` steps,
    ``compute_numerical_gradients`` takes finite differences: never called).

    Parameters
    ----------
    layer : object
    verb : bool
        ``False``: the name needs no verb (``get_gradients``, ``param_grads``: named in the
        report as what ``gradient_method=`` could name, never called unnamed).
    needing_arguments : bool
        ``True``: the methods so named that are *not* callable with no argument instead
        (``compute_gradients(self, scale)``: the report says why it was not called).

    Returns
    -------
    list of str
        In the order of the class's MRO; the check calls one only when it is the only one.
    """
    names, seen = [], set()
    for cls in type(layer).__mro__:
        for name, static in vars(cls).items():
            if name in seen:
                continue
            seen.add(name)
            words = _name_words(name)
            if (name.startswith("_") or not isinstance(static, types.FunctionType)
                    or (verb and not words & GRADIENT_METHOD_VERBS)
                    or not words & GRADIENT_METHOD_WORDS
                    or words & NEVER_CALLED_WORDS):
                continue
            if callable_without_arguments(getattr(layer, name, None)) != needing_arguments:
                names.append(name)
    return names


#: Where a ``backward`` that returns None keeps the input's gradient (NNFS's
#: ``self.dinputs``; ``self.d_inputs`` beside ``d_weights``).
INPUT_GRAD_NAMES = ("dinputs", "d_inputs")


def kept_input_gradient(layer):
    """The input gradient a ``backward`` returning None keeps (:data:`INPUT_GRAD_NAMES`), or
    None."""
    for name in INPUT_GRAD_NAMES:
        value = lookup(layer, name)
        if value is not None:
            return value
    return None


def _is_float_value(v):
    if isinstance(v, np.ndarray):
        return v.dtype.kind == "f"
    return isinstance(v, (float, np.floating)) and not isinstance(v, bool)


def owner_key(root, path):
    """``(id(owner), key)`` of the last step of ``path`` (each part of an ``"a+b"`` path).

    Returns
    -------
    list of (int, object)
    """
    keys = []
    for part in split_path(path, "+"):
        steps = _steps(split_path(part, "@")[0])
        obj = root
        for kind, name in steps[:-1]:
            obj = _step(obj, kind, name)
            if obj is _MISSING:
                break
        else:
            kind, name = steps[-1]
            if isinstance(obj, list) and isinstance(name, str) and name.isdigit():
                name = int(name)
            keys.append((id(obj), name))
    return keys


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes
    ----------
    params : dict of str to str
        ``{param_path: grad_path}`` in discovery order.
    not_checked : list of (str, str)
        ``(path, reason)`` of every array or scalar considered and not taken.
    accumulating : list of str
        Gradient paths of accumulating buffers (zeroed before every backward).
    floating : list of str
        Paths of floating arrays held that are not state (for the
        "no parameter found" warning).
    scalars : list of str
        Parameter paths holding a Python float (substituted by a 0-d array
        for the check).
    notes : list of (str, str)
        ``(kind, message)`` of what the report should say (tied weights).
    backward_floats : list of (str, tuple)
        Floating attributes ``backward`` rebinds, with their shapes (gradients under
        names the discovery does not know are among them).
    created : list of str
        Floating arrays ``forward`` bound that have a gradient beside them by name
        (``W`` and ``dW``): parameters a first forward creates (``if self.W is None``)
        -- or state recomputed by every forward, which a second look tells apart.
    unset : list of (str, str)
        ``(param, gradient)`` where the gradient attribute exists but is ``None`` after
        ``backward`` (the book's ``self.dW = None`` in ``__init__``, never computed).
    shapes : dict of str to tuple
        The shapes of the floating arrays held without a gradient.
    aliases : dict of str to (str, str)
        ``{view: (its gradient, base)}``: parameters that are views of another one whose
        gradient is the base's there (a flat parameter buffer), checked as the base.
    """

    params: dict = field(default_factory=dict)
    not_checked: list = field(default_factory=list)
    accumulating: list = field(default_factory=list)
    floating: list = field(default_factory=list)
    scalars: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    backward_floats: list = field(default_factory=list)
    created: list = field(default_factory=list)
    unset: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)
    #: ``[(param, [arrays], [rivals])]``: parameters without a gradient by name for which
    #: backward wrote several floating arrays of their shape, or arrays other parameters
    #: without one (rivals) share (:func:`pair_by_shape`): no gradient can be told, and
    #: the check must not PASS
    ambiguous: list = field(default_factory=list)
    #: ``{param: [arrays]}``: parameters without a gradient for which backward wrote
    #: floating arrays of their shape whose names do not tie them to it (a cache ``dz``):
    #: never taken as its gradient, said in a warning (:func:`pair_by_shape`)
    unnamed: dict = field(default_factory=dict)
    #: parameters ``backward`` rebinds (taken for one for the gradient beside them: an
    #: update, a defensive copy), to be confirmed as read by forward (:func:`_drop_unread`)
    rebound_by_backward: list = field(default_factory=list)


def _holder(path):
    """The path of the layer holding the attribute at ``path`` (``"blocks.0"`` for
    ``"blocks.0.W"`` and ``"blocks.0.p['W']"``, ``""`` for ``"W"``)."""
    return ".".join(split_path(path, ".")[:-1])


def shaped_like(found, path):
    """The floating attributes ``backward`` wrote (created or rebound) on the layer holding
    ``path``, an array held without a gradient, whose shape is that of ``path``
    (:attr:`Discovery.shapes`).

    Parameters
    ----------
    found : Discovery
    path : str
        A floating array held without a gradient.

    Returns
    -------
    list of str
    """
    shape, holder = found.shapes.get(path), _holder(path)
    return [w for w, s in found.backward_floats
            if shape is not None and s == shape and _holder(w) == holder]


def name_tokens(name):
    """The words of a name, lower-case, in order: split at ``_``, digits (each run of
    digits a word) and camelCase boundaries (``"Wx_d"`` -> ``["wx", "d"]``,
    ``"kernel2_g"`` -> ``["kernel", "2", "g"]``, ``"gradWeight"`` -> ``["grad",
    "weight"]``).

    Parameters
    ----------
    name : str

    Returns
    -------
    list of str
    """
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def _leaf(path):
    """The name a path ends in: its last attribute or string key (``"blocks.0.W"`` ->
    ``"W"``, ``"p['W']"`` -> ``"W"``)."""
    steps = _steps(path)
    return str(steps[-1][1]) if steps else path


def names_parameter(array, param):
    """How strongly the name of ``array`` (a path) ties it to the parameter ``param`` as
    its gradient: 0 when not at all; else the number of words of ``param``'s name found in
    it (:func:`name_tokens`), whole and in order (``W_d``, ``d_W_tmp`` for ``W``; ``Wx_d``
    for ``Wx`` and not ``W``: ``Wx`` is one word); highest for one of
    :func:`grad_candidates` ignoring case (``dw`` for ``W``); lowest for a name of
    gradient words alone (``self.grad``, ``self.gradient``: any parameter's, so one
    only where a single parameter of its shape lacks a gradient).

    No plural folds into its singular, nor back: ``weight_output_delta`` (Trask's delta at
    the output of ``weights``, of shape (N, out)) has no word ``weights``, and folding
    would take it as ``weights``' gradient whenever N equals the input width. A gradient
    spelled with the other number (``weight_d`` for ``weights``) is left unpaired and said
    (:attr:`Discovery.unnamed`), never checked against the wrong array.

    Parameters
    ----------
    array : str
        The path of an array backward wrote.
    param : str
        The path of a parameter without a gradient by name.

    Returns
    -------
    int
        0 for no tie; larger for a stronger one.
    """
    name, pname = _leaf(array), _leaf(param)
    if name.lower() in {c.lower() for c in grad_candidates(pname)}:
        return _CANDIDATE_TIE
    words, want = name_tokens(name), name_tokens(pname)
    n = len(want)
    if n and any(words[i:i + n] == want for i in range(len(words) - n + 1)):
        return n
    return _GENERIC_TIE if words and set(words) <= GRADIENT_METHOD_WORDS else 0


#: :func:`names_parameter` of a name the rule itself spells (above any word count), and
#: of one of gradient words alone (below any)
_CANDIDATE_TIE, _GENERIC_TIE = 1000, 0.5


def pair_by_shape(found, held=frozenset()):
    """Take as the gradient of a parameter without one by name the one floating array
    ``backward`` wrote of exactly its shape whose name ties it to the parameter
    (:func:`names_parameter`: ``W_d`` beside ``W``). ``found`` is updated in place, a note
    for each pair.

    An array of the shape without the name (a cache ``dz``, Trask's
    ``weight_output_delta``) is never taken: it is listed in :attr:`~Discovery.unnamed`
    (a warning; the parameter stays not checked). An array naming several parameters
    goes to the one whose name it holds most of (``W1_d``: ``W1`` before ``W``). Several
    arrays naming one parameter (the gradient very likely among them), or one naming
    several equally: :attr:`~Discovery.ambiguous` (failing). Arrays forward writes,
    running statistics, masks, the input (:attr:`Discovery.floating` holds none of
    them), the gradients already paired and the arrays of ``held`` (backward's ``dout``
    or ``dx``: :func:`_holding`) are never candidates.

    Parameters
    ----------
    found : Discovery
        Updated in place.
    held : collection of str
        Paths of arrays that hold backward's ``dout`` or ``dx`` (:func:`_holding`).
    """
    unpaired = [p for p in found.floating if p not in found.params]
    taken = set(found.params.values()) | set(held)
    owners = _name_owners(found, unpaired, taken)
    for path in unpaired:
        written = [w for w in shaped_like(found, path) if w not in taken]
        named = [w for w in written if path in owners.get(w, ())]
        if not named:
            if written:
                found.unnamed[path] = written
            continue
        found.floating.remove(path)
        rivals = [q for w in named for q in owners[w] if q != path]
        if len(named) > 1 or rivals:
            found.ambiguous.append((path, named, list(dict.fromkeys(rivals))))
            continue
        _take_by_shape(found, path, named[0])


def _name_owners(found, unpaired, taken):
    """``{array: [parameters]}``: for each floating array backward wrote (not in
    ``taken``), the parameters of its shape in its layer its name ties it to most strongly
    (:func:`names_parameter`; several only on a tie)."""
    owners = {}
    for w, shape in found.backward_floats:
        if w in taken:
            continue
        scores = {p: names_parameter(w, p) for p in unpaired
                  if found.shapes.get(p) == shape and _holder(p) == _holder(w)}
        best = max(scores.values(), default=0)
        if best:
            owners[w] = [p for p, s in scores.items() if s == best]
    return owners


def _take_by_shape(found, path, grad):
    """``grad`` checked as ``path``'s gradient (:func:`pair_by_shape`), and the note."""
    found.params[path] = grad
    found.not_checked = [(p, why) for p, why in found.not_checked if p not in (path, grad)]
    names = grad_candidates(path)
    found.notes.append(("gradient-by-shape", (
        f"{path} has no gradient under the names looked for ({said_names(names)}); "
        f"backward wrote {grad}, the only floating array of its shape "
        f"{found.shapes[path]} whose name ties it to {_leaf(path)}, so {grad} was checked as its "
        f"gradient (name it {names[0]}, or pass params={{{path!r}: {grad!r}}}, to say so)")))


def _attributes_changed(snapshot):
    """``(obj, current, saved)`` attribute dicts (``__dict__`` or slots) of the objects
    whose attributes changed since ``snapshot``."""
    from gradcheck.protocol.state import _slot_values

    for s in snapshot.changed():
        if s.kind in ("attrs", "slots"):
            yield s.obj, (s.obj.__dict__ if s.kind == "attrs" else _slot_values(s.obj)), \
                s.saved[1]


def created(snapshot):
    """``{(id(obj), name)}`` of the attributes set since ``snapshot`` that it held absent
    or as ``None`` (created, not rebound).

    Parameters
    ----------
    snapshot : gradcheck.protocol.state.StateSnapshot
    """
    return {(id(obj), n) for obj, cur, saved in _attributes_changed(snapshot) for n in cur
            if saved.get(n) is None and cur[n] is not None}


def rebound(snapshot):
    """``{(id(container), key)}`` of every attribute, dict entry or list slot rebound,
    added or removed since ``snapshot`` (not arrays changed in place).

    Parameters
    ----------
    snapshot : gradcheck.protocol.state.StateSnapshot
    """
    keys = {(id(obj), n) for obj, cur, saved in _attributes_changed(snapshot)
            for n in cur.keys() | saved.keys() if cur.get(n, _MISSING) is not saved.get(
                n, _MISSING)}
    for s in snapshot.changed():
        if s.kind == "dict":
            keys.update((id(s.obj), k) for k in s.obj.keys() | s.saved.keys()
                        if s.obj.get(k, _MISSING) is not s.saved.get(k, _MISSING))
        elif s.kind == "list":
            n = max(len(s.obj), len(s.saved))
            keys.update((id(s.obj), i) for i in range(n)
                        if i >= len(s.obj) or i >= len(s.saved) or s.obj[i] is not s.saved[i])
    return keys


class _Walk:
    """One discovery walk (see :func:`discover`)."""

    def __init__(self, written, inputs, exclude):
        self.written, self.inputs, self.exclude = written, inputs, set(exclude)
        self.found = Discovery()
        self.written_backward = frozenset()
        #: what backward created (absent or None after forward): a cache, never a parameter
        self.created_backward = frozenset()
        self.seen_params = {}  # id(param) -> path
        self.seen_grads = {}  # path -> the gradient objects summed for it
        self.seen_layers = set()
        self.nested_arrays = []  # (path, owner, key, array) found by nested()
        self.nested_layers = []  # (path, layer) found by nested()
        self.floating_ids = {}  # path -> id(array) of the arrays held without a gradient

    def skip(self, path, reason):
        self.found.not_checked.append((path, reason))

    def take(self, path, grad, value, accumulating=False, grad_obj=None):
        other = self.seen_params.get(id(value))
        if other is not None and not isinstance(value, float):
            self.tie(path, grad, grad_obj, other)
            return
        if isinstance(value, np.ndarray):
            self.seen_params[id(value)] = path
            self.seen_grads[path] = [grad_obj]
        if isinstance(value, float):
            self.found.scalars.append(path)
        self.found.params[path] = grad
        if accumulating:
            self.found.accumulating.append(grad)

    def tie(self, path, grad, grad_obj, first):
        """``path`` is the array already taken as ``first``: one target. With a gradient of
        its own (``dW_out`` beside ``dW_in``, not the same object: ``Sequential``'s ``dW_0``
        is its child's ``dW``) it is a tied weight, checked against the sum of both."""
        known = self.seen_grads.setdefault(first, [])
        if grad_obj is None or any(grad_obj is g for g in known):
            return
        known.append(grad_obj)
        self.found.params[first] += "+" + grad
        self.found.notes.append((
            "tied-parameter", f"{path} is the same array as {first} (tied weights): "
            f"checked once, as {first}, against the sum {self.found.params[first]}"))

    def layer(self, obj, prefix):
        attrs = _with_properties(obj, attributes(obj))
        if id(obj) in self.seen_layers or not attrs:
            return
        self.seen_layers.add(id(obj))
        grads = self._grad_names(attrs)
        containers = set()
        for pname, gname, acc in CONTAINERS:
            if isinstance(attrs.get(pname), (dict, list, tuple)):
                gname = next((g for g in (gname, *CONTAINER_GRADS.get(pname, ()))
                              if isinstance(attrs.get(g), (dict, list, tuple, np.ndarray))),
                             gname)
                containers.update((pname, gname))
                self.container(obj, prefix, pname, gname, acc)
        for pname, gname in self.grad_dicts(obj, attrs, containers):
            containers.update((pname, gname))
            self.container(obj, prefix, pname, gname, False)
        subs = []
        for name, value in attrs.items():
            path = attr_path(prefix, name)
            if name in containers or name in grads or path in self.exclude:
                continue
            if (id(obj), name) in self.written and _holds_layers(value):
                # made anew by every forward (the second book's TimeRNN: one RNN per time
                # step over the layer's own arrays): per-call state, whose parameters are the
                # layer's and whose gradients its backward adds up itself
                self.skip(path, _PER_CALL_LAYERS)
                continue
            if is_layer(value):
                subs.append((value, path + "."))
            elif isinstance(value, (list, tuple)) and any(is_layer(v) for v in value):
                subs += [(v, f"{path}.{i}.") for i, v in enumerate(value) if is_layer(v)]
            elif isinstance(value, dict) and any(is_layer(v) for v in value.values()):
                subs += [(v, key_path(path, k) + ".") for k, v in value.items() if is_layer(v)]
            elif _holds_floats(value):
                self.named_container(obj, attrs, name, prefix)
            elif param_object(value) is not None:
                self.param_object(value, path)
            elif isinstance(value, _NESTING) or _plain_object(value):
                self.nested(value, path, set())
            else:
                self.attribute(obj, attrs, name, value, path, prefix)
        for sub, sub_prefix in subs:
            self.layer(sub, sub_prefix)

    def grad_dicts(self, obj, attrs, taken):
        """``[(parameter dict, gradient dict)]``: dicts under any names (not in ``taken``)
        whose keys pair by :func:`grad_key` (EpyNN's ``p = {'W': ...}`` beside ``g =
        {'dW': ...}``), the parameter dict's floating entries candidates (not written by
        ``forward`` or ``backward``: ``fc['X']`` beside ``bc['dX']`` is a cache) and
        their gradients floating."""
        dicts = {n: v for n, v in attrs.items() if isinstance(v, dict) and n not in taken}
        pairs, used = [], set()
        for pname, params in dicts.items():
            if (id(obj), pname) in self.written or pname in used:
                continue
            keys = [k for k, v in params.items() if isinstance(k, str)
                    and isinstance(v, np.ndarray) and v.dtype.kind == "f"
                    and self._classify(params, k, v, pname) is None]
            gname = next((g for g, grads in dicts.items() if g != pname and g not in used
                          and any(grad_key(grads, k) != k
                                  and _is_float_value(grads[grad_key(grads, k)])
                                  for k in keys)), None)
            if gname is not None:
                pairs.append((pname, gname))
                used.update((pname, gname))
        return pairs

    @staticmethod
    def _grad_names(attrs):
        """Attribute names that are the gradient of another attribute (``dW`` beside ``W``)."""
        names = set()
        for name in attrs:
            for cand in grad_candidates(name):
                if cand in attrs:
                    names.add(cand)
        return names

    def _classify(self, owner, key, value, path):
        """The reason ``value`` is not a parameter candidate, or ``None`` when it is one."""
        if isinstance(value, np.ndarray) and value.dtype.kind in "biu":
            return "integer" if value.dtype.kind != "b" else "boolean"
        if isinstance(value, np.ndarray) and value.dtype.kind not in "f":
            return f"dtype {value.dtype}"
        if id(value) in self.inputs:
            return _INPUT
        if (id(owner), key) in self.written:
            return _FORWARD
        if (id(owner), key) in self.written_backward:
            return _BACKWARD
        return None

    def attribute(self, obj, attrs, name, value, path, prefix):
        if not (isinstance(value, np.ndarray) or _is_float_value(value)):
            return  # strings, ints, None, callables: not arrays or scalars
        tried = grad_candidates(name)
        if isinstance(value, np.ndarray) and id(value) in self.seen_params:
            for cand in tried:  # a tied weight with a gradient of its own, or an alias
                grad = attrs.get(cand)
                if isinstance(grad, np.ndarray) and grad.dtype.kind == "f":
                    self.take(path, attr_path(prefix, cand), value, grad_obj=grad)
                    break
            return
        reason = self._classify(obj, name, value, path)
        if reason in ("integer", "boolean", _BACKWARD) and any(
                attrs.get(c) is not None and c in attrs for c in tried) and not (
                reason is _BACKWARD and (id(obj), name) in self.created_backward):
            # a gradient beside it: meant as a parameter (an integer one the check refuses;
            # one backward rebinds -- a defensive copy, an update -- is still one; one
            # backward creates, a `z` recomputed beside its `dz`, is a cache)
            if reason is _BACKWARD:
                self.found.rebound_by_backward.append(path)
            reason = None
        if reason is None:
            for cand in tried:
                grad = attrs.get(cand, _MISSING)
                if grad is _MISSING:
                    continue
                if grad is None:
                    reason = f"{cand} is None after backward"
                    if _is_float_value(value) and isinstance(value, np.ndarray):
                        self.found.unset.append((path, attr_path(prefix, cand)))
                    break
                if isinstance(grad, np.ndarray) or _is_float_value(grad):
                    self.take(path, attr_path(prefix, cand), value, grad_obj=grad)
                    self._other_grad_names(attrs, path, prefix, cand, tried, grad)
                    return
            else:
                reason = f"no gradient (looked for {said_names(tried)})"
                if name in DATA_NAMES:
                    reason = ("a mask" if name == "mask" else "labels or targets") + (
                        " (by its name), no gradient: not a parameter")
                elif (_is_float_value(value) and isinstance(value, np.ndarray) and value.ndim
                      and not _STATISTICS.search(name)):
                    self.floating(path, value)
        if reason is _BACKWARD and _is_float_value(value):
            self.found.backward_floats.append((path, np.shape(value)))
        if reason == _FORWARD and isinstance(value, np.ndarray) and any(
                isinstance(attrs.get(c), np.ndarray) and attrs[c].shape == value.shape
                for c in tried):
            self.found.created.append(path)
        if reason is not _INPUT:  # the layer keeps its input (self.x = x): checked as that
            self.skip(path, reason)

    def _other_grad_names(self, attrs, path, prefix, used, tried, grad):
        """A warning when another gradient name (``W_grad`` beside the ``dW`` used) holds
        a different floating array: only the one used is checked."""
        others = [c for c in tried[tried.index(used) + 1:]
                  if attrs.get(c) is not grad and (isinstance(attrs.get(c), np.ndarray)
                                                   or _is_float_value(attrs.get(c)))]
        if others:
            self.found.notes.append((
                "several-gradient-names",
                f"{path} has gradients under {len(others) + 1} names after backward: "
                f"{attr_path(prefix, used)} (checked) and "
                f"{', '.join(attr_path(prefix, c) for c in others)} (not "
                f"checked); to check another, name it: params={{{path!r}: "
                f"{attr_path(prefix, others[0])!r}}}"))

    def param_object(self, value, path):
        """A parameter object (``self.W = Param(W)``, ``W.value`` / ``W.grad``): its value a
        parameter, its gradient accumulating (backward adds with ``+=``, the model zeroes)."""
        vname, gname = param_object(value)
        arr = getattr(value, vname)
        where = f"{path}.{vname}"
        reason = self._classify(value, vname, arr, where)
        if reason is None:
            self.take(where, f"{path}.{gname}", arr, accumulating=True,
                      grad_obj=getattr(value, gname))
        elif reason is not _INPUT:
            self.skip(where, reason)

    def named_container(self, obj, attrs, name, prefix):
        """A list, tuple or dict of arrays under any name (``weights``), its gradients in
        the container ``dweights``/``weights_grad``/``grad_weights``, element by element."""
        value = attrs[name]
        keys = value.keys() if isinstance(value, dict) else range(len(value))
        reason = None
        if (id(obj), name) in self.written:
            reason = _FORWARD
        elif (id(obj), name) in self.written_backward:
            reason = _BACKWARD
        elif id(value) in self.inputs:
            reason = _INPUT  # (an entry that is the input is one: _classify)
        tried = grad_candidates(name)
        gname = next((c for c in tried if isinstance(attrs.get(c), (dict, list, tuple))), None)
        if reason is None and gname is not None:
            self.container(obj, prefix, name, gname, False)
            return
        skipped, appended = [], self._appended_inputs(value)
        for key in keys:
            item = value[key]
            if not (isinstance(item, np.ndarray) or _is_float_value(item)):
                continue
            path = f"{attr_path(prefix, name)}[{key!r}]"
            why = reason or self._classify(value, key, item, path)
            if appended and (key in appended or np.shape(item) in appended.values()):
                why = _INPUT if key in appended else (
                    f"an earlier input: forward appends its input to {name} "
                    "(numpy-ml's self.X), not a parameter")
            if why is None:
                why = f"no gradient (looked for {said_names([c + f'[{key!r}]' for c in tried])})"
                if isinstance(item, np.ndarray) and item.ndim and name not in DATA_NAMES:
                    self.floating(path, item)
            if why is not _INPUT:
                skipped.append((key, path, why))
        self._skip_entries(attr_path(prefix, name), skipped, rebuilt=reason is _FORWARD)

    def _appended_inputs(self, value):
        """``{index: shape}`` of the entries of the list ``value`` that forward wrote and
        that are its input or a view of it (numpy-ml's ``self.X.append(X)``); empty for
        anything else."""
        if not isinstance(value, list):
            return {}
        return {i: v.shape for i, v in enumerate(value)
                if (id(value), i) in self.written and isinstance(v, np.ndarray)
                and any(v is a or np.may_share_memory(v, a) for a in self.inputs.values())}

    def _skip_entries(self, path, skipped, rebuilt):
        """List a container's entries as not checked: one line for the container when
        forward rebuilds it (``self.cache = {"x": x, "mask": m}``) or writes every entry
        listed, else entry by entry."""
        if len(skipped) < 2 or not (rebuilt or all(w is _FORWARD for *_, w in skipped)):
            for _, where, why in skipped:
                self.skip(where, why)
            return
        keys = ", ".join(repr(k) for k, *_ in skipped[:6]) + (", ..." if len(skipped) > 6
                                                               else "")
        self.skip(path, (f"rebuilt by every forward ({keys})" if rebuilt else
                         f"its entries {keys} written by forward") + " -> state, not a parameter")

    #: Containers nested deeper than this under an attribute are listed as not walked.
    NESTED_DEPTH = 8

    def nested(self, value, path, seen, depth=0):
        """Floating arrays inside containers of containers (CS231n's ``bn_params``, a list
        of dicts holding ``running_mean``) or inside objects that are not layers (a CS231n
        model's, an optimizer's): never parameters here (``params=`` names them), each
        listed as not checked with the reason."""
        if id(value) in seen:
            return
        if depth > self.NESTED_DEPTH:
            self.skip(path, f"nested more than {self.NESTED_DEPTH} containers deep: not walked")
            return
        seen.add(id(value))
        if isinstance(value, _NESTING):
            items = [(f"{path}[{k!r}]", k, v) for k, v in (
                value.items() if isinstance(value, dict) else enumerate(value))]
        else:
            items = [(attr_path(path + ".", k), k, v) for k, v in vars(value).items()]
        for where, key, item in items:
            if where in self.exclude:
                continue
            if is_layer(item):
                self.nested_layers.append((where, item))
            elif isinstance(item, _NESTING) or _plain_object(item):
                self.nested(item, where, seen, depth + 1)
            elif isinstance(item, np.ndarray) and item.dtype.kind == "f":
                self.nested_arrays.append((where, value, key, item))

    def floating(self, path, value):
        """A floating array held without a gradient found for it (a warning, unless it is
        a parameter taken under another path: :meth:`finish`)."""
        self.found.floating.append(path)
        self.floating_ids[path] = id(value)

    def finish(self):
        """After the walk: a floating array without a gradient that is a parameter taken
        under another path (the book's ``params['W1']``, the very array its ``Affine1``
        layer holds) is checked as that one, and said so; the nested arrays are listed
        (an optimizer's reference to ``W`` is left out: it is ``W``)."""
        aliases = {p: self.seen_params[i] for p, i in self.floating_ids.items()
                   if i in self.seen_params}
        self.found.floating = [p for p in self.found.floating if p not in aliases]
        self.found.not_checked = [
            (p, f"the same array as {aliases[p]}: checked as that") if p in aliases else (p, why)
            for p, why in self.found.not_checked]
        for where, layer in self.nested_layers:
            if id(layer) not in self.seen_layers:  # not walked under another path
                self.skip(where, "a layer inside a nested container: its parameters are not "
                          "walked (hold it in an attribute, or a list or dict of layers)")
        for where, owner, key, item in self.nested_arrays:
            if id(item) in self.seen_params:
                continue
            why = self._classify(owner, key, item, where) or (
                "no gradient found (nested below an attribute of the layer; params= "
                "names one to check)")
            if why is not _INPUT:
                self.skip(where, why)

    def container(self, obj, prefix, pname, gname, accumulating):
        params, grads = getattr(obj, pname), getattr(obj, gname, None)
        keys = params.keys() if isinstance(params, dict) else range(len(params))
        by_id = {}
        for key in keys:
            value = params[key]
            path = f"{attr_path(prefix, pname)}[{key!r}]"
            if not (isinstance(value, np.ndarray) or _is_float_value(value)):
                continue
            reason = self._classify(params, key, value, path)
            grad, gpath = _container_grad(params, grads, key, attr_path(prefix, gname))
            if reason is None and not isinstance(grad, np.ndarray) and not _is_float_value(grad):
                reason = (f"no gradient in {gname}[{key!r}]" if grad is None
                          else f"{gname}[{key!r}] is {type(grad).__name__}")
                if isinstance(grads, np.ndarray):
                    reason = (f"no gradient: {gname} is one {grads.dtype} array of shape "
                              f"{grads.shape}, not a list; it is taken as the gradient only "
                              "beside a single parameter of its shape, or row by row when it "
                              f"stacks one per parameter (shape "
                              f"{(len(params),) + np.shape(value)})")
                if isinstance(value, np.ndarray) and value.ndim:
                    self.floating(path, value)
            if reason is not None:
                if reason is not _INPUT:
                    self.skip(path, reason)
                continue
            if isinstance(params, (list, tuple)) and id(value) in by_id:
                self.tie(path, gpath, grad, by_id[id(value)])  # one target, gradients summed
                continue
            by_id[id(value)] = path
            self.take(path, gpath, value, accumulating, grad_obj=grad)


def _holds_floats(value):
    """A list, tuple or dict (not of layers) holding at least one floating ndarray."""
    if not isinstance(value, (list, tuple, dict)):
        return False
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in items)


#: Containers whose items the walk for nested arrays looks into.
_NESTING = (list, tuple, dict, collections.deque)


def _plain_object(value):
    """An instance with attributes that is not a layer, a class, a module, a callable or an
    array (an ndarray subclass -- a memmap, a masked array -- has a ``__dict__`` too)."""
    return (hasattr(value, "__dict__") and not callable(value)
            and not isinstance(value, (type, types.ModuleType, np.ndarray))
            and not is_layer(value))


#: ``(value, gradient)`` attribute names of a parameter object (the dlcourse.ai and UW
#: CSE 599 assignments' ``Param``: ``value``/``grad``, ``data``/``grad``).
PARAM_OBJECT_NAMES = (("value", "grad"), ("data", "grad"), ("value", "gradient"),
                      ("data", "gradient"))


def param_object(value):
    """``(value name, gradient name)`` when ``value`` is a parameter object: a plain object
    (not a layer) holding a floating array and a floating gradient array of its shape
    under the names of :data:`PARAM_OBJECT_NAMES`; else ``None``."""
    if not _plain_object(value):
        return None
    attrs = vars(value)
    for vname, gname in PARAM_OBJECT_NAMES:
        v, g = attrs.get(vname), attrs.get(gname)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and isinstance(g, np.ndarray) \
                and g.dtype.kind == "f" and g.shape == v.shape:
            return vname, gname
    return None


def _container_grad(params, grads, key, gname):
    """``(gradient, its path)`` of ``params[key]`` in the gradient container ``grads`` at
    path ``gname``: its item ``key`` (a list, tuple or dict; in a dict, the key's gradient
    name when the dict keeps it under that one: :func:`grad_key`); for a list or tuple of
    parameters, a floating ndarray ``grads`` too: the gradient itself beside a single
    parameter of its shape (``params = [W]``, ``grads = dW``), its row ``key`` when it
    stacks one gradient per parameter (shape ``(len(params),) + W.shape``). The
    gradient is ``None`` when there is none."""
    key = grad_key(grads, key)
    path = f"{gname}[{key!r}]"
    if not (isinstance(grads, np.ndarray) and isinstance(params, (list, tuple))):
        return _item(grads, key), path
    shape = np.shape(params[key])
    if grads.dtype.kind != "f":
        return None, path
    if len(params) == 1 and grads.shape == shape:
        return grads, gname
    if grads.shape == (len(params),) + shape and all(
            np.shape(p) == shape for p in params):
        return grads[key], path
    return None, path


def _item(container, key):
    if isinstance(container, dict):
        return container.get(key)
    if isinstance(container, (list, tuple)) and isinstance(key, int) and key < len(container):
        return container[key]
    return None


def discover(layer, written=frozenset(), inputs=(), exclude=(), written_backward=frozenset(),
             passed=(), created_backward=frozenset()):
    """Parameters, gradients and what was not checked, after one ``backward``.

    Parameters
    ----------
    layer : object
        A layer after one ``forward``/``backward`` pair.
    written : set of (int, key)
        What ``forward`` rebound (:func:`rebound` of a snapshot taken before it).
    inputs : iterable of ndarray
        The arrays passed to ``forward`` (a layer that keeps ``self.x = x`` holds them).
    exclude : iterable of str
        Paths never taken.
    written_backward : set of (int, key)
        What ``backward`` (and not ``forward``) rebound: a gradient under a name
        the discovery does not know, or a cache of backward's.
    passed : iterable of ndarray
        What ``backward`` was given and returned (``dout``, ``dx``): an array backward
        keeps that holds one of them is never a parameter's gradient by shape.
    created_backward : set of (int, key)
        What ``backward`` created (:func:`created`): a cache even beside a name of its
        gradient (``z`` recomputed beside ``dz``).

    Returns
    -------
    Discovery
    """
    walk = _Walk(written, {id(a): a for a in inputs}, exclude)
    walk.written_backward = written_backward
    walk.created_backward = created_backward
    walk.layer(layer, "")
    walk.finish()
    _merge_views(layer, walk.found)
    _views_of_targets(layer, walk.found)
    walk.found.shapes = {p: np.shape(resolve(layer, p)) for p in walk.found.floating}
    pair_by_shape(walk.found, _holding(layer, walk.found, passed))
    return walk.found


def _holding(layer, found, passed):
    """The arrays ``backward`` wrote that hold ``dout`` or ``dx`` (the same memory, or the
    same values: ``self.grad_input = dx``, ``self.dout = dout``): the input's gradient or
    a cache of the upstream one, never a parameter's (:func:`pair_by_shape`)."""
    passed = [a for a in passed if isinstance(a, np.ndarray)]
    held = set()
    for path, _ in found.backward_floats:
        value = resolve(layer, path)
        if isinstance(value, np.ndarray) and any(
                np.shares_memory(value, a) or (value.shape == a.shape and np.array_equal(
                    value, a)) for a in passed):
            held.add(path)
    return held


def _merge_views(layer, found):
    """A parameter that is a view of another one (``Wt = W.T`` with ``dWt`` beside ``W``
    with ``dW``): one target, the base, checked against its gradient plus the view's
    mapped back onto it (``"dW+dWt@Wt@W"``)."""
    arrays = {p: a for p in found.params for a in [resolve(layer, p)]
              if isinstance(a, np.ndarray)}
    owners = {id(a): p for p, a in arrays.items()
              if a.base is None and (a.flags.c_contiguous or a.flags.f_contiguous)}
    for p, a in arrays.items():
        if a.base is None or "@" in found.params[p] or "+" in found.params[p]:
            continue
        base = owners.get(id(_owner(a)))
        if base is not None and arrays[base].dtype != a.dtype:
            base = None
        alias = base if base is not None else _enclosing(p, arrays)  # theta of a model's
        if alias is not None and _same_gradient(layer, found.params[p], p,
                                                found.params[alias], alias):
            found.aliases[p] = (found.params.pop(p), alias)
            found.notes.append((
                "view-parameter", f"{p} is a view of {alias} and its gradient "
                f"{found.aliases[p][0]} holds {alias}'s gradient there (a flat parameter "
                f"buffer): checked once, as {alias} against "
                f"{split_path(found.params[alias], '+')[0]}"))
            continue
        if base is None:
            continue
        found.params[base] += f"+{found.params[p]}@{p}@{base}"
        del found.params[p]
        found.notes.append((
            "tied-parameter", f"{p} is a view of {base} (a transpose, reshape or slice): "
            f"checked once, as {base}, against {found.params[base]} (the gradient of the "
            "view mapped back onto it)"))


def _byte_range(a):
    """``(low, high)``: the bytes ``a``'s elements span."""
    lo = hi = a.__array_interface__["data"][0]
    for n, st in zip(a.shape, a.strides):
        lo, hi = lo + min(0, (n - 1) * st), hi + max(0, (n - 1) * st)
    return lo, hi + a.itemsize


def _enclosing(p, arrays):
    """The parameter the view ``arrays[p]`` lies inside: a contiguous one of its dtype over
    the same memory (``theta`` of ``theta[:12].reshape(4, 3)``, ``theta`` itself a slice of
    a model's buffer); the largest when several do, the first of two over the same bytes;
    ``None`` when none does."""
    a = arrays[p]
    lo, hi = _byte_range(a)
    names, best = list(arrays), None
    for q, b in arrays.items():
        if q == p or b.dtype != a.dtype or _owner(b) is not _owner(a) or not (
                b.flags.c_contiguous or b.flags.f_contiguous):
            continue
        blo, bhi = _byte_range(b)
        if blo <= lo and hi <= bhi and ((blo, bhi) != (lo, hi) or names.index(q) < names.index(p)
                                        or b.base is None):
            if best is None or b.nbytes > arrays[best].nbytes:
                best = q
    return best


def _views_of_targets(layer, found):
    """Floating arrays held without a gradient that share memory with the targets: a view
    of a parameter taken (``W = theta[:12].reshape(4, 3)`` of a flat buffer ``theta``
    checked against ``dtheta``; the views merged as aliases), or the flat buffer the
    parameters taken (or their gradients) are views of. Listed as such, no warning."""
    owners, buffers = {}, {}  # {id: (path, "parameter"/"gradient")}, {(id, what): views}
    for p, g in found.params.items():
        for path, what in ((p, "parameter"), (split_path(g, "+")[0], "gradient")):
            a = resolve(layer, path)
            if isinstance(a, np.ndarray) and a.base is None:
                owners[id(a)] = (path, what)
            elif isinstance(a, np.ndarray):
                buffers.setdefault((id(_owner(a)), what), []).append(path)
    found.not_checked = [(p, f"a view of {found.aliases[p][1]}, its gradient "
                          f"{found.aliases[p][0]} the same view of {found.aliases[p][1]}'s: "
                          "checked as that") for p in found.aliases] + found.not_checked
    shared = {}
    for p in found.floating:
        a = resolve(layer, p)
        if not isinstance(a, np.ndarray):
            continue
        if a.base is not None and id(_owner(a)) in owners:
            base, what = owners[id(_owner(a))]
            shared[p] = (f"a view of {base}: checked as that" if what == "parameter"
                         else f"a view of the gradient {base}")
        for what in ("parameter", "gradient"):
            views = buffers.get((id(a), what), [])
            if a.base is None and views:
                shared[p] = (f"the buffer the {what}s {', '.join(views)} are views of"
                             + (": checked through them where they lie" if what == "parameter" else ""))
    found.floating = [p for p in found.floating if p not in shared]
    found.not_checked = [(p, shared.get(p, why)) for p, why in found.not_checked]


def prefer_views(found, wrt):
    """Check the views a ``wrt`` names (``wrt=['x', 'W', 'b']`` of ``W``, ``b`` views of a
    flat ``theta``: :attr:`Discovery.aliases`) against their own gradients, in place of the
    base, when ``wrt`` does not name the base too."""
    chosen = {v: gb for v, gb in found.aliases.items() if v in (wrt or ()) and gb[1] not in wrt}
    if not chosen:
        return
    bases = {base for _, base in chosen.values()}
    for base in bases:
        del found.params[base]
    found.params.update((v, g) for v, (g, _) in chosen.items())
    found.notes = [(k, t) for k, t in found.notes
                   if not (k == "view-parameter" and t.split(" ", 1)[0] in chosen)]
    others = {v for v, (_, base) in found.aliases.items() if base in bases} - set(chosen)
    found.not_checked = [(p, f"a view of {found.aliases[p][1]}, not in wrt" if p in others
                          else why) for p, why in found.not_checked if p not in chosen] + [
        (b, "a flat buffer of views named by wrt: checked as those") for b in sorted(bases)]


def _same_gradient(layer, grad, view, base_grad, base):
    """Whether the view ``view``'s gradient is its base's gradient at the view's elements
    (``dW = dtheta[:12].reshape(4, 3)`` beside ``W = theta[:12].reshape(4, 3)``, a view or a
    copy): the one gradient reported twice, not the gradient of a second use of the
    memory (``Wt = W.T`` beside ``W``, whose ``dWt`` is added to ``dW``)."""
    g, v, b = (resolve(layer, q) for q in (grad, view, base))
    bg = resolve(layer, split_path(base_grad, "+")[0])
    if not all(isinstance(a, np.ndarray) for a in (g, v, b, bg)) or g.shape != v.shape \
            or bg.shape != b.shape:
        return False
    return bool(np.array_equal(_memory_order(b, bg)[view_index(v, b)], g))


def layer_tree(layer):
    """The layer and its sub-layers (attributes, and layers in lists, tuples and dicts of
    them), each once, with the path prefix it is found under.

    Parameters
    ----------
    layer : object

    Returns
    -------
    list of (object, str)
        ``(obj, prefix)``, the layer first (prefix ``""``; ``"layers.0."`` below it).
    """
    found, seen = [], set()

    def visit(obj, prefix):
        attrs = attributes(obj)
        if id(obj) in seen or not attrs:
            return
        seen.add(id(obj))
        found.append((obj, prefix))
        for name, value in attrs.items():
            items = (value if isinstance(value, (list, tuple)) else
                     list(value.values()) if isinstance(value, dict) else [value])
            keys = (range(len(items)) if isinstance(value, (list, tuple)) else
                    list(value.keys()) if isinstance(value, dict) else [None])
            for k, v in zip(keys, items):
                if is_layer(v):
                    path = attr_path(prefix, name)
                    visit(v, f"{path}." if k is None else f"{path}.{k}."
                          if isinstance(value, (list, tuple)) else key_path(path, k) + ".")

    visit(layer, "")
    return found


def _accumulating(obj):
    """Whether ``obj`` holds numpy-ml's ``parameters``/``gradients`` dicts."""
    attrs = attributes(obj)
    return isinstance(attrs.get("parameters"), dict) and isinstance(attrs.get("gradients"),
                                                                    dict)


def accumulating_buffers(layer):
    """Gradient paths of the accumulating convention, found before any call.

    ``parameters``/``gradients`` dicts (numpy-ml) of the layer and its
    sub-layers: ``backward`` adds into ``gradients[...]`` with ``+=`` and an
    optimizer step calls ``flush_gradients()``. (numpy-ml's ``flush_gradients``
    also clears the cached inputs, so the check zeroes the buffers itself.) And
    the gradients of parameter objects (:func:`param_object`, ``W.grad``), which
    backward adds into and the model zeroes before every backward, and Torch7's
    ``gradWeight`` beside ``weight`` (:func:`torch7_grad_name`), which
    ``accGradParameters`` adds into and ``zeroGradParameters`` zeroes.

    Returns
    -------
    list of str
    """
    paths = []
    for obj, prefix in layer_tree(layer):
        if _accumulating(obj):
            paths += [f"{prefix}gradients[{k!r}]" for k, v in obj.gradients.items()
                      if isinstance(v, np.ndarray)]
        attrs = attributes(obj)
        paths += [f"{attr_path(prefix, name)}.{names[1]}" for name, value in attrs.items()
                  for names in [param_object(value)] if names is not None]
        paths += [attr_path(prefix, g) for name, value in attrs.items()
                  for g in [torch7_grad_name(name)] if isinstance(value, np.ndarray)
                  and isinstance(attrs.get(g), np.ndarray) and attrs[g].shape == value.shape]
    return paths


def _accumulating_layers(layer):
    """The layer and its sub-layers of the accumulating convention (numpy-ml's
    ``LayerBase``: ``parameters``/``gradients`` dicts and a ``flush_gradients()``)."""
    return [obj for obj, _ in layer_tree(layer)
            if _accumulating(obj) and callable(getattr(obj, "flush_gradients", None))]


def flush_accumulated(layer):
    """Call ``flush_gradients()`` on every layer of the accumulating convention in ``layer``.

    numpy-ml's training step is ``forward``, ``backward``, then ``update()``:
    the optimizer step and ``flush_gradients()``, which empties the inputs
    ``forward`` appends to ``self.X`` (a ``backward`` after two forwards
    returns one gradient per kept input, a list), the derived variables and
    the gradients. The check flushes where a training step would: before it
    starts, after the forward that creates the parameters, and between the
    sequence check's two calls; and only when the layers hold inputs of
    earlier forward calls (``self.X``): a layer that holds none is left as it is.

    Parameters
    ----------
    layer : object

    Returns
    -------
    int
        The number of inputs the flushed layers held from earlier forward calls
        (0: nothing was flushed).

    Raises
    ------
    LayerCallError
        A ``flush_gradients()`` raised (a frozen numpy-ml layer asserts).
    """
    from gradcheck.errors import LayerCallError

    found = _accumulating_layers(layer)
    held = sum(len(getattr(obj, "X", None)) for obj in found
               if isinstance(getattr(obj, "X", None), list))
    if not held:
        return 0  # nothing a forward left behind: no update() would change anything
    for obj in found:
        try:
            obj.flush_gradients()
        except Exception as exc:  # noqa: BLE001 -- the layer's own error, named
            raise LayerCallError(f"flush_gradients() raised {type(exc).__name__}: {exc}",
                                 layer=type(layer).__name__) from exc
    return held


def zero_buffers(layer, paths):
    """Zero the accumulating gradient buffers at ``paths`` in place (what
    ``flush_gradients()`` does for the gradients)."""
    for path in paths:
        buf = resolve(layer, path)
        if isinstance(buf, np.ndarray) and buf.flags.writeable:
            buf[...] = 0
        elif isinstance(buf, np.ndarray):
            assign(layer, path, np.zeros_like(buf))


def _written_in_train_mode(adapter, x, snapshot):
    """What a train-mode forward rebinds, for an eval-mode check of a layer with a train/eval
    switch (one forward call on the snapshot, restored): its caches (the book's batch norm
    keeps ``xc``, ``xn`` from a training step) are state, never parameters. An empty set
    otherwise, or when the train-mode call raises (twice: an error that does not repeat is
    raised, intermittent)."""
    from gradcheck.errors import LayerCallError, intermittent_error

    if adapter.flag_mode is None or adapter.train_flg:
        return set()
    train = type(adapter)(adapter.layer, True)
    try:
        train.forward(x.copy())
        return rebound(snapshot)
    except Exception as exc:  # noqa: BLE001 -- the eval-mode calls report the layer's errors
        user = exc.__cause__ if isinstance(exc, LayerCallError) else None
        snapshot.restore_all()
        err = user and intermittent_error(user, lambda: train.raw_forward(x.copy()),
                                          "the train-mode call that finds what a train-mode "
                                          "forward writes", layer=adapter.name)
        if err:
            raise err from user
        return set()
    finally:
        snapshot.restore_all()


#: Why an array forward recomputes in place is not checked (:func:`derived_in_place`).
DERIVED = ("derived: the forward pass recomputes it in place from other arrays on every call "
           "(self.W[...] = g * v / norm(v)), so it is no free parameter and its gradient is "
           "not checked; the arrays it is computed from are")


def derived_in_place(adapter, x, snapshot, after_forward, paths):
    """The parameters of ``paths`` that ``forward`` overwrites in place with a value that
    does not depend on what they held (weight normalisation's ``self.W[...] = g * v /
    norm(v)`` beside a ``dW``: its numerical gradient is 0 and it FAILed).

    From the state ``snapshot`` holds, all are moved at once and forward called: those it
    writes over (the same array, no longer as moved) are candidates; each is then moved
    alone, and derived when forward puts it back at the value it had after the forward
    ``after_forward`` follows. One forward call, and one per candidate (none for a layer
    whose forward writes no parameter); what the layer raises is raised.

    Returns
    -------
    list of str
    """
    saved = {s.path: s.saved for s in after_forward.slots if s.kind == "array" and s.path}
    paths = [p for p in paths if p in saved and saved[p].dtype.kind == "f" and saved[p].size
             and not isinstance(resolve(adapter.layer, p), np.matrix)]  # `*=` is a matmul
    candidates = _written_over(adapter, x, snapshot, paths)
    return [p for p in candidates if _written_over(adapter, x, snapshot, [p], saved[p])]


def move_params(layer, paths, rng, step, absolute=False):
    """``p *= 1 +- step`` (random signs) in place for the floating, writeable arrays at
    ``paths``, once per memory block: relative, so no element changes sign, and an
    element that is exactly zero (a bias initialised to zeros) moves to ``+step * max(1,
    max|p|)``, so it moves too; with ``absolute``, ``p += +- step * max(1, max|p|)``
    instead (for the probes that ask whether forward reads or writes an array).

    Parameters
    ----------
    layer : object
    paths : iterable of str
    rng : numpy.random.Generator
    step : float
    absolute : bool

    Returns
    -------
    dict of str to ndarray
        ``{path: its value before}`` of the arrays moved (or sharing a moved block).
    """
    arrays = {p: resolve(layer, p) for p in paths}
    saved = {p: arr.copy() for p, arr in arrays.items() if isinstance(arr, np.ndarray)
             and arr.dtype.kind == "f" and arr.flags.writeable}
    done = []
    for p in saved:
        arr = arrays[p]
        if any(np.may_share_memory(arr, d) for d in done):
            continue
        signs = np.where(rng.random(arr.shape) < 0.5, -1.0, 1.0)  # 3x faster than choice
        scale = step * max(1.0, float(np.max(np.abs(arr)))) if arr.size else step
        if absolute:
            arr += (scale * signs).astype(arr.dtype)
        else:
            zeros = arr == 0
            arr *= (1.0 + step * signs).astype(arr.dtype)
            arr[zeros] = scale
        done.append(arr)
    return saved


def _written_over(adapter, x, snapshot, paths, expected=None):
    """The arrays of ``paths`` that one forward call, from ``snapshot`` with all of them
    moved by ``+- 0.01 max(1, max|p|)`` (:func:`move_params`, by an amount: zeros move too),
    writes over in place (to ``expected`` when given). The layer's own error is raised,
    never eaten."""
    moved = _moved(adapter.layer, snapshot, paths)
    adapter.forward(x.copy())
    return _changed(adapter.layer, moved, expected)


def _moved(layer, snapshot, paths):
    """``{path: (array, its moved value)}``: the layer put back to ``snapshot``, then the
    arrays at ``paths`` moved by ``+- 0.01 max(1, max|p|)`` (:func:`move_params`, by an
    amount: a buffer of zeros moves too)."""
    snapshot.restore_all()
    return {p: (resolve(layer, p), resolve(layer, p).copy())
            for p in move_params(layer, paths, np.random.default_rng(0), 0.01, absolute=True)}


def _changed(layer, moved, expected=None):
    """The paths of ``moved`` (:func:`_moved`) whose array the layer still holds and a
    call wrote over in place (to ``expected`` when given)."""
    return [p for p, (arr, was) in moved.items() if resolve(layer, p) is arr
            and not np.array_equal(arr, was)
            and (expected is None or np.array_equal(arr, expected))]


def left_floating(layer, found):
    """``{path: copy}`` of the floating arrays ``found`` has no gradient for, as the
    discovery's backward left them (for :func:`written_buffers`).

    Parameters
    ----------
    layer : object
    found : Discovery

    Returns
    -------
    dict of str to ndarray
    """
    arrays = {p: resolve(layer, p) for p in found.floating}
    return {p: a.copy() for p, a in arrays.items() if isinstance(a, np.ndarray)}


def written_buffers(adapter, x, dout, snapshot, found, left):
    """The floating arrays ``found`` has no gradient for that ``forward`` or ``backward``
    writes over in place (buffers: ``np.tanh(x, out=self.out)``, ``np.multiply(...,
    out=self.dx)``), listed as written by the one that writes them (state, a gradient or a
    cache) instead of warned about as arrays that may be trainable.

    Moved all at once from ``snapshot`` (:func:`_moved`), then one forward and one
    backward call, only when there are such arrays; the layer is put back. One forward
    writes to the value it wrote unmoved (``left``, from :func:`left_floating`) is
    :data:`DERIVED` (an output buffer, weight normalisation's ``W`` without a ``dW``), one
    it writes from what it held state (a running mean). One backward writes is a buffer
    only when it writes the value it wrote unmoved: an in-place update (``self.W -= 0.01
    * g``) depends on what the array held, and stays warned about.

    Parameters
    ----------
    adapter : gradcheck.protocol.adapter.LayerAdapter
    x, dout : ndarray
    snapshot : gradcheck.protocol.state.StateSnapshot
    found : Discovery
        Changed in place: its ``floating`` and ``not_checked``.
    left : dict of str to ndarray
    """
    if not left:
        return
    moved = _moved(adapter.layer, snapshot, list(left))
    adapter.forward(x.copy())
    by_forward = _changed(adapter.layer, moved)
    adapter.backward(dout, x.shape, x.dtype)
    derived = [p for p in by_forward if np.array_equal(resolve(adapter.layer, p), left[p])]
    by_backward = [p for p in _changed(adapter.layer, {p: m for p, m in moved.items()
                                                       if p not in by_forward})
                   if np.array_equal(resolve(adapter.layer, p), left[p])]
    snapshot.restore_all()
    why = {**{p: _BACKWARD for p in by_backward}, **{p: _FORWARD for p in by_forward},
           **{p: DERIVED for p in derived}}
    found.floating[:] = [p for p in found.floating if p not in why]
    found.not_checked[:] = [(p, why.get(p, r)) for p, r in found.not_checked]


#: Why an array backward rebinds beside its gradient's name is not checked when forward
#: does not read it (:func:`_drop_unread`).
UNREAD = ("written by backward and not read by forward (moving it leaves forward's output "
          "unchanged) -> a cache, not a parameter")


def _drop_unread(adapter, x, snapshot, out, found):
    """Take out of ``found``'s parameters those backward rebinds that forward does not
    read: a cache ``z`` recomputed in backward beside its ``dz``, after a training step
    left one (a parameter backward rebinds, an update, changes forward's output when
    moved). One forward call per such array, from ``snapshot``; none for other layers."""
    out = np.asarray(out)
    for path in [p for p in found.rebound_by_backward if p in found.params]:
        snapshot.restore_all()
        # moved by an amount, not a factor: a bias of zeros moves too
        arr = resolve(adapter.layer, path)
        if not (isinstance(arr, np.ndarray) and arr.size and move_params(
                adapter.layer, [path], np.random.default_rng(0), 0.01, absolute=True)):
            continue
        moved = np.asarray(adapter.forward(x.copy()))
        if moved.shape == out.shape and np.array_equal(moved, out, equal_nan=True):
            found.params.pop(path)
            found.not_checked.append((path, UNREAD))


def _drop_derived(found, derived):
    """Take the :func:`derived_in_place` arrays out of ``found``'s parameters, listed as
    not checked with :data:`DERIVED`."""
    for path in derived:
        found.params.pop(path, None)
        found.not_checked[:] = [(p, r) for p, r in found.not_checked if p != path]
        found.not_checked.append((path, DERIVED))


def discover_by_calling(adapter, x, dout, seed, exclude=(), inputs=(), strict=False):
    """Discover the parameters of ``adapter.layer`` from one ``forward``/``backward``.

    The layer is snapshotted, called once on a copy of ``x`` (what ``forward``
    rebinds is state, see :func:`rebound`) and with ``dout`` (or a standard
    normal one from ``seed``), walked by :func:`discover`, then restored.

    Parameters
    ----------
    adapter : gradcheck.protocol.adapter.LayerAdapter
    x : ndarray
        The working input (not modified: the layer gets a copy).
    dout : ndarray or None
    seed : int
    exclude : iterable of str
    inputs : iterable of ndarray
        Other inputs ``forward`` receives (held by the layer: not parameters).
    strict : bool
        Raise the layer's error instead of returning ``None``.

    Returns
    -------
    Discovery or None
        ``None`` when the calls do not fit the protocol; the check then
        discovers in its own analytic pass, which reports the error.

    Raises
    ------
    LayerCallError
        The layer's ``forward`` or ``backward`` raised (an error that only
        this call meets would otherwise go unreported).
    """
    from gradcheck.errors import GradCheckInputError, LayerCallError
    from gradcheck.protocol.state import StateSnapshot

    layer = adapter.layer
    snapshot = StateSnapshot(layer)
    try:
        written = _written_in_train_mode(adapter, x, snapshot)
        xc = x.copy()
        out = adapter.forward(xc)
        out_copy = np.array(out, copy=True)
        written = written | rebound(snapshot)
        after_forward = StateSnapshot(layer, include_global_rng=False)
        if dout is None:
            from gradcheck.protocol.problem import default_dout

            dout = default_dout(seed, out.shape, out.dtype)
        elif dout.shape != out.shape:
            if strict:
                raise GradCheckInputError(
                    f"dout has shape {dout.shape}, but forward() returned shape {out.shape}",
                    layer=adapter.name)
            return None
        dx, _ = adapter.backward(dout, x.shape, x.dtype)

        def walk():
            return discover(layer, written, inputs=(xc, *inputs), exclude=exclude,
                            written_backward=rebound(after_forward) - written,
                            passed=(dout, dx), created_backward=created(after_forward))

        found = with_gradient_method(adapter, walk(), walk)
        stepped_without_rate(adapter, x, after_forward, found)
        left = left_floating(layer, found)
        _drop_derived(found, derived_in_place(adapter, x, snapshot, after_forward,
                                              list(found.params)))
        written_buffers(adapter, x, dout, snapshot, found, left)
        _drop_unread(adapter, x, snapshot, out_copy, found)
    except GradCheckInputError as exc:
        if strict or isinstance(exc, LayerCallError):  # the layer's own error: never eaten
            raise
        return None
    finally:
        snapshot.restore_all()
    return found


#: The note kinds of a discovery that make the report fail (:func:`stepped_without_rate`,
#: several gradient methods none of which was called: an ambiguity the user resolves).
FAILING_NOTES = ("backward-steps", "gradient-method-ambiguous")

#: Why an array backward steps without a known rate is not checked.
STEPPED_REASON = ("stepped by backward, no learning rate found to read its gradient from the "
                  "step (backward-steps finding)")


def _changed_by_backward(layer, after_forward):
    """``{path: value}`` of the floating arrays (held after forward, in ``after_forward``)
    that the discovery's backward rebound or changed in place."""
    out = {}
    for s in after_forward.slots:
        if s.kind != "array" or not s.path or s.saved.dtype.kind != "f":
            continue
        now = resolve(layer, s.path)
        if isinstance(now, np.ndarray) and now.shape == s.saved.shape \
                and not np.array_equal(now, s.saved, equal_nan=True):
            out[s.path] = now.copy()
    return out


def stepped_without_rate(adapter, x, after_forward, found):
    """The arrays forward reads that backward changed, with no learning rate to read their
    step from (``self.W -= self.mu * g``, a rate under a name the check does not know):
    taken out of ``found``'s parameters and warnings, listed as not checked
    (:data:`STEPPED_REASON`), and a failing ``backward-steps`` note naming them and how to
    name the rate. Never a silent "cache". Two forward calls, and one per array backward
    changed, from ``after_forward``, only when backward changed some; the layer is left as
    backward left it.

    Parameters
    ----------
    adapter : gradcheck.protocol.adapter.LayerAdapter
    x : ndarray
        The working input (the layer gets a copy).
    after_forward : gradcheck.protocol.state.StateSnapshot
        The layer's state after the discovery's forward call.
    found : Discovery
        Updated in place.
    """
    from gradcheck.protocol.state import StateSnapshot
    from gradcheck.protocol.update import LR_ATTRIBUTES, _read_by_forward

    changed = _changed_by_backward(adapter.layer, after_forward)
    changed = {p: v for p, v in changed.items() if p not in found.params.values()}
    if not changed:
        return
    after_backward = StateSnapshot(adapter.layer, include_global_rng=False)
    try:
        steps = _read_by_forward(adapter.layer, after_forward,
                                 lambda: adapter.forward(x.copy()), changed)
    finally:
        after_backward.restore_all()
    if not steps:
        return
    names = ", ".join(steps)
    found.notes.append(("backward-steps", (
        f"backward steps {names} (an SGD step inside backward?): it changes "
        f"{'them' if len(steps) > 1 else 'it'} and forward reads "
        f"{'them' if len(steps) > 1 else 'it'}, and no learning rate was found to read the "
        f"gradient from the step, so {names} {'were' if len(steps) > 1 else 'was'} not "
        f"checked: name its rate as the check knows it (an attribute self.learning_rate or "
        f"self.lr holding a number, or a backward parameter learning_rate=/lr=; names of "
        f"{', '.join(LR_ATTRIBUTES)}, in any case, digits and base_/initial_ affixes), or "
        f"keep the gradients beside the parameters (d{steps[0].split('.')[-1]})")))
    for path in steps:
        found.params.pop(path, None)
    found.floating[:] = [p for p in found.floating if p not in steps]
    found.not_checked[:] = [(p, r) for p, r in found.not_checked if p not in steps] + [
        (p, STEPPED_REASON) for p in steps]


def with_gradient_method(adapter, found, walk):
    """``found``, or the discovery after the layer's gradient method when ``backward`` left
    floating arrays without a gradient and the layer has one (:func:`gradient_methods`):
    it is called, the layer walked again, and when that finds more parameters the
    adapter calls it after every backward of the check (and the report says so).

    Parameters
    ----------
    adapter : gradcheck.protocol.adapter.LayerAdapter
        After one ``forward``/``backward``.
    found : Discovery
        What that backward left.
    walk : callable
        ``walk() -> Discovery``, the layer walked again.

    Returns
    -------
    Discovery
    """
    from gradcheck.errors import LayerCallError

    if adapter.gradient_method is not None:  # named, or found by an earlier discovery
        paths = [p for p in found.params
                 if not adapter.gradient_method_found or p in adapter.gradient_method_found]
        if paths:
            found.notes.append(("gradient-method", gradient_method_note(
                adapter.gradient_method, found, paths,
                found_by_name=bool(adapter.gradient_method_found))))
        return found
    if not (found.floating or found.unset):
        return found
    names = gradient_methods(adapter.gradient_owner)
    if len(names) > 1:
        _ambiguous_methods(found, names)
    if not names:
        _unnamed_gradient_methods(adapter.gradient_owner, found)
    if len(names) != 1:
        return found
    adapter.gradient_method = names[0]
    try:
        again = _first_call(adapter, found, walk)
    except LayerCallError as exc:
        adapter.gradient_method, adapter.gradient_method_keeps = None, ()
        found.notes.append(("gradient-method", f"{exc} -- not called by the check"))
        return found
    new = [p for p in again.params if p not in found.params]
    if not new:
        adapter.gradient_method, adapter.gradient_method_keeps = None, ()
        return found
    adapter.gradient_method_found = tuple(new)
    again.notes.append(("gradient-method", gradient_method_note(names[0], again, new)))
    if adapter.gradient_method_keeps:
        again.notes.append(("gradient-method", _stepping_method_note(
            names[0], adapter.gradient_method_keeps)))
    return again


def _first_call(adapter, found, walk):
    """One call of the adapter's gradient method after the discovery's backward, then the
    layer walked again (``walk()``); the arrays ``found`` has no gradient for that it
    changes (an update inside it) are put back and kept in the adapter's
    ``gradient_method_keeps`` (put back after every later call too)."""
    held = {p: resolve(adapter.layer, p) for p in found.floating}
    held = {p: (a, a.copy()) for p, a in held.items() if isinstance(a, np.ndarray)}
    adapter.compute_gradients()
    adapter.gradient_method_keeps = tuple(put_back_changed(adapter.layer, held))
    return walk()


def _stepping_method_note(name, keeps):
    """The note of a gradient method ``name`` that also changes the parameters ``keeps``."""
    kept = ", ".join(keeps)
    return (f"{name}() also changes {kept} (an update step inside it?): {kept} put back "
            f"after every call of {name}() by the check, as a step inside backward is "
            "undone; the gradients it computes are checked from the parameters as they were")


#: Why the parameters left without a gradient are not checked when the layer has several
#: gradient methods (:func:`_ambiguous_methods`).
AMBIGUOUS_REASON = ("no gradient after backward, and the layer has several gradient methods: "
                    "none was called (gradient-method-ambiguous finding)")


def _ambiguous_methods(found, names):
    """Several methods that may compute the gradients backward leaves out, none called:
    a failing ``gradient-method-ambiguous`` note naming them and how to name one, and the
    parameters left without a gradient listed as not checked for that reason (no PASS:
    the user resolves the ambiguity)."""
    left = list(found.floating) or [p for p, _ in found.unset]
    found.notes.append(("gradient-method-ambiguous", (
        f"backward leaves no gradient for {', '.join(left)} and the layer has several "
        f"methods that may compute them ({', '.join(n + '()' for n in names)}): none was "
        f"called, so {', '.join(left)} {'were' if len(left) > 1 else 'was'} not checked; "
        f"name the one a training step calls: gradient_method={names[0]!r} (the gate: "
        f"--gradient-method {names[0]}, or gradient_method in [tool.gradcheck])")))
    found.floating[:] = [p for p in found.floating if p not in left]
    found.unset[:] = [(p, g) for p, g in found.unset if p not in left]
    found.not_checked[:] = [(p, r) for p, r in found.not_checked if p not in left] + [
        (p, AMBIGUOUS_REASON) for p in left]


def put_back_changed(layer, held):
    """The paths of ``held`` (``{path: (array, its contents before)}``) whose array a call
    changed (in place, or rebound), each put back: the same object, the same contents.

    Parameters
    ----------
    layer : object
    held : dict of str to (ndarray, ndarray)

    Returns
    -------
    list of str
    """
    changed = []
    for path, (obj, saved) in held.items():
        now = resolve(layer, path)
        if now is obj and np.array_equal(obj, saved, equal_nan=True):
            continue
        changed.append(path)
        if now is not obj:
            assign(layer, path, obj)
        if not np.array_equal(obj, saved, equal_nan=True):  # a read-only one rebound only
            np.copyto(obj, saved)
    return changed


def _unnamed_gradient_methods(layer, found):
    """A note naming the methods without a verb that may compute the gradients
    (``get_gradients()``): never called unnamed, ``gradient_method=`` names one; and those
    so named that need arguments (``compute_gradients(self, scale)``), which the check
    cannot call."""
    from gradcheck.protocol.signatures import signature_text

    for name in gradient_methods(layer, needing_arguments=True):
        found.notes.append(("gradient-method", (
            f"{name}{signature_text(getattr(layer, name))} may compute the gradients backward "
            "leaves out, but it needs arguments: not called (the check calls a gradient "
            "method after every backward with no argument, and gradient_method= cannot pass "
            f"any); give them defaults (def {name}(self, scale=1.0)) or add a method taking "
            f"none that calls it with yours, and name that one: gradient_method='...'")))
    maybe = gradient_methods(layer, verb=False)
    if maybe:
        found.notes.append(("gradient-method", (
            f"{', '.join(m + '()' for m in maybe)} may compute the gradients backward leaves "
            "out: not called (the check calls a method after backward only when its name "
            f"says compute/calc/calculate gradients); if it does, name it: "
            f"gradient_method={maybe[0]!r}")))


def gradient_method_note(name, found, paths, found_by_name=True):
    """What the report says of the gradient method ``name`` the check calls after every
    backward: the gradients of ``paths`` it computes (``found.params``), and why it was
    called (found by its name, or named by ``gradient_method=``).

    Parameters
    ----------
    name : str
        The method's name.
    found : Discovery
    paths : iterable of str
        The parameters whose gradients it computes.
    found_by_name : bool
        Found by its name (else named by ``gradient_method=``).

    Returns
    -------
    str
    """
    grads = ", ".join(f"{p} <- {found.params[p]}" for p in paths)
    why = ("backward itself leaves none; the check calls it after every backward, as a "
           "training loop does before its update (a method that updates, steps or resets "
           "is never called)" if found_by_name else
           "named by gradient_method=, called after every backward of the check")
    return f"gradients from {name}() after backward ({grads}): {why}"
