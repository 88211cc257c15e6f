"""Call conventions: several inputs and outputs, labels, loss layers, function pairs.

The engine knows one convention: ``forward(x[, train_flg]) -> out`` (one
array) and ``backward(dout) -> dx``. :class:`CallLayer` is a thin layer that
follows it *inside* the toolkit and calls the user's layer the way the
user's code does:

* several inputs, positional (``check_layer(layer, (x, h0, c0))``) or by
  keyword (a dict): every floating input is its own target, named from
  ``forward``'s signature; the first is the wrapper's ``x``, the others are
  held in ``inputs[name]`` and perturbed in place like parameters;
* inputs that are not differentiated -- integer labels and indices, masks,
  option dicts (CS231n's ``bn_param``), Python scalars -- are passed through
  untouched (a dict is state: restored after every call, like a layer's);
* a tuple output is packed into one flat array (the engine never sees the
  structure), and its ``dout`` is split back into one upstream gradient per
  output for ``backward(*douts)``;
* ``backward`` may return a tuple with one gradient per floating input (or
  per input, ``None`` for the others), or ``None`` with the gradient in
  ``self.dinputs`` ("Neural Networks from Scratch"); a ``forward`` that
  returns ``None`` and keeps ``self.output`` is read there.

:class:`FunctionPair` turns CS231n-style functions ``forward(*inputs) ->
(out, cache)``, ``backward(dout, cache) -> (dx, dw, ...)`` into a layer, so
:func:`gradcheck.check_function` is :func:`gradcheck.check_layer` on it.
"""

import ast
import copy
import functools
import numbers
import re

import numpy as np

from gradcheck.errors import GradCheckInputError, LayerCallError, LayerProtocolError
from gradcheck.protocol.adapter import (SWITCH_NAMES, call_without_dout, flag_name, flag_value,
                                        keepdims_of, missing_arguments, unpassed_error)
from gradcheck.protocol.discovery import (DATA_NAMES, grad_candidates, kept_input_gradient,
                                          layer_method)
from gradcheck.protocol.paths import lookup, resolve
from gradcheck.protocol.regularization import subtract_penalty
from gradcheck.protocol.signatures import (positional_parameters, signature, source_of,
                                           unwrapped)
from gradcheck.protocol.update import (LEARNING_RATE, StepReader, UpdateRecorder,
                                       learning_rate_attribute, learning_rate_parameter,
                                       optimizer_paths, rate_candidates, rate_held,
                                       read_by_forward, stepped_arrays)

__all__ = ["CallLayer", "FunctionPair", "Context", "cache_parameter", "ctx_inputs", "takes_ctx",
           "is_several", "forward_names", "is_index_input",
           "index_note", "call_dout", "inputs_first", "GRAD_OUTPUT_NAMES", "taken_again"]

#: Names of a first ``forward`` parameter that takes indices, not values.
INDEX_NAMES = ("idx", "ids", "indices", "index", "tokens", "token_ids", "word_ids", "labels",
               "t")



def is_several(x):
    """Whether ``x`` means several inputs: a tuple, a dict, or a list that is not
    a nested list of numbers (which stays one array, as before)."""
    if isinstance(x, (tuple, dict)):
        return True
    if isinstance(x, list):
        return not _numeric_list(x)
    return False


def _numeric_list(x):
    if isinstance(x, list):
        return all(_numeric_list(v) for v in x)
    return isinstance(x, numbers.Number)


def _switch_apart(fn, values, takes):
    """`` inputs besides its train/eval switch 'train' (...)`` when the one value too many
    is a bool and forward has a switch: the switch is no input (``train_flg=`` sets it)."""
    sig = signature(fn)
    switch = next((p for p in (sig.parameters if sig is not None else ())
                   if p in SWITCH_NAMES), None)
    if switch is None or len(values) != takes + 1 or not isinstance(values[-1], bool):
        return ""
    return (f" inputs besides its train/eval switch {switch!r} (set by train_flg=, not "
            "passed as an input)")


def forward_names(fn, n):
    """Names of the first ``n`` positional parameters of ``fn`` (``x0, x1, ...`` past
    its end when it takes ``*args``), and how many it takes (``None``: any number)."""
    sig = signature(fn)
    if sig is None:
        return [f"x{i}" for i in range(n)], None
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
              and p.name not in SWITCH_NAMES]
    star = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    names = [p.name for p in params[:n]] + [f"x{i}" for i in range(len(params), n)]
    return names, None if star else len(params)


_LABELS = ("not differentiated: labels, passed to backward again (a loss's "
           "backward(dvalues, labels))")
_LABELS_BY_NAME = ("not differentiated: labels (by its name; backward returns no gradient "
                   "for it)")
_NONE_GRADIENT = ("not differentiated: backward returns None for its gradient (autograd "
                  "style)")
_MODEL_INPUT = ("not differentiated: the model's input (loss returns gradients for "
                "model.params only)")


def _loss_labels(layer, names):
    """The inputs of ``forward`` (after the first) that ``backward`` takes again by name:
    ``backward(dvalues, y_true)`` beside ``forward(y_pred, y_true)`` (NNFS's losses)."""
    sig = signature(layer_method(layer, "backward"))
    if sig is None:
        return []
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p.name for p in params[1:] if p.name in names[1:] and p.default is p.empty]


#: Names of the upstream gradient of a backward that takes the inputs first (Torch7's
#: ``backward(input, gradOutput)``).
GRAD_OUTPUT_NAMES = ("gradOutput", "grad_output", "gradOutputs", "grad_outputs")


def inputs_first(layer):
    """How many of ``forward``'s inputs ``backward`` takes before the upstream gradients.

    Torch7 and its Python ports: ``backward(input, gradOutput)`` returns ``gradInput``.
    The leading positional parameters of ``backward`` named as ``forward``'s inputs (or
    all before one named as in :data:`GRAD_OUTPUT_NAMES`) are inputs, given again as the
    training loop gives them; at least one parameter must be left for a gradient.

    Returns
    -------
    int
        0 for the usual ``backward(dout)``.
    """
    back = _array_parameters(layer_method(layer, "backward"))
    if not back:
        return 0
    names = [p.name for p in back]
    marked = next((i for i, n in enumerate(names) if n in GRAD_OUTPUT_NAMES), None)
    if marked is not None:
        return marked
    inputs = set(forward_names(layer_method(layer, "forward"), len(names))[0])
    count = next((i for i, n in enumerate(names) if n not in inputs), len(names))
    return count if count < len(names) else 0


#: Names of a ``backward`` parameter after the upstream gradient that asks for ``forward``'s
#: input again (besides forward's own input names), and for its output.
INPUT_AGAIN_NAMES = ("input", "inputs", "inp", "x", "X")
OUTPUT_AGAIN_NAMES = ("output", "outputs", "out", "y", "Y", "result")


def taken_again(layer, first=None):
    """What ``backward`` takes again after the upstream gradient: ``backward(dout, input,
    output)`` (yanyan0207's ``MaxPooling``), the training loop passing the last forward's
    input and output back.

    The trailing required positional parameters of ``backward`` (never its first, the
    gradient) named as ``forward``'s first input or in :data:`INPUT_AGAIN_NAMES` (not as
    another input of forward's: those are labels, :func:`_loss_labels`) are given that
    input; those named in :data:`OUTPUT_AGAIN_NAMES` (and no input of forward's) the output.
    ``first``: :func:`inputs_first` of ``layer`` when the caller has it (read again if not).

    Returns
    -------
    tuple of str
        For each such parameter, in order, the name of forward's input it is given, or
        ``""`` for the output; empty for the usual ``backward(dout)`` and for Torch7's
        :func:`inputs_first`.
    """
    back = _array_parameters(layer_method(layer, "backward"))
    if not back or len(back) < 2 or (inputs_first(layer) if first is None else first):
        return ()
    fwd = layer_method(layer, "forward")
    names = forward_names(fwd, forward_names(fwd, 0)[1] or 1)[0]
    again = []
    for p in reversed(back[1:]):
        if p.default is not p.empty or p.name in names[1:]:
            break
        if p.name == names[0] or p.name in INPUT_AGAIN_NAMES:
            again.append(names[0])
        elif p.name in OUTPUT_AGAIN_NAMES:
            again.append("")
        else:
            break
    return tuple(reversed(again))


def _source_tree(fn):
    """The parsed source of ``fn`` (the decorated method's own, :func:`source_of`);
    ``None`` when it cannot be read."""
    source = source_of(fn)
    try:
        return None if source is None else ast.parse(source)
    except (SyntaxError, IndentationError):
        return None


#: ``{(code object, dicts): bool}`` of :func:`returns_several`: a function's source is read
#: and parsed once (every check asks it of forward and backward; ~0.5 ms a parse).
_RETURNS_SEVERAL = {}


def returns_several(fn, dicts=False):
    """Whether ``fn``'s source has a ``return a, b, ...`` (a tuple or list display of two
    or more values): a backward returning ``(dx, dW, db)``; with ``dicts``, a ``return
    {"h": h, "c": c}`` too. ``False`` when the source cannot be read."""
    code = getattr(unwrapped(fn), "__code__", None)
    key = (code, dicts)
    if code is not None and key in _RETURNS_SEVERAL:
        return _RETURNS_SEVERAL[key]
    tree = _source_tree(fn)
    displays = (ast.Tuple, ast.List, ast.Dict) if dicts else (ast.Tuple, ast.List)
    found = tree is not None and any(
        isinstance(node, ast.Return) and isinstance(node.value, displays)
        and len(node.value.keys if isinstance(node.value, ast.Dict) else node.value.elts) >= 2
        for node in ast.walk(tree))
    if code is not None:
        if len(_RETURNS_SEVERAL) >= 1024:  # a long-lived process checking many functions
            _RETURNS_SEVERAL.clear()
        _RETURNS_SEVERAL[key] = found
    return found


def _own_returns(tree):
    """The ``return`` statements of the function ``tree`` parses, not of functions nested
    in it."""
    stack = list(ast.iter_child_nodes(tree.body[0])) if tree.body else []
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _value_name(node):
    """What a returned value's expression names it: ``("grad", "dW")`` for ``dW`` or
    ``self.dW``, ``("key", "W")`` for ``grads['W']``; ``None`` for anything else."""
    if isinstance(node, ast.Name):
        return ("grad", node.id)
    if isinstance(node, ast.Attribute):
        return ("grad", node.attr)
    if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)):
        return ("key", node.slice.value)
    return None


def returned_names(fn, count):
    """The name of each of ``count`` values ``fn`` returns, read from its ``return dx, dW,
    db`` statements of ``count`` values (no starred one); ``None`` where the source says
    nothing (an expression, statements naming it differently, no readable source).

    Parameters
    ----------
    fn : callable
    count : int
        The number of values of the return statements read.

    Returns
    -------
    tuple
        ``count`` items, each ``None`` or a pair of :func:`_value_name`.
    """
    tree = _source_tree(fn)
    found = None
    for node in _own_returns(tree) if tree is not None else ():
        elts = getattr(node.value, "elts", None)
        if not isinstance(node.value, (ast.Tuple, ast.List)) or len(elts) != count or any(
                isinstance(e, ast.Starred) for e in elts):
            continue
        names = tuple(_value_name(e) for e in elts)
        found = names if found is None else tuple(map(_agree, found, names))
    return tuple(None if n is _CONFLICT else n for n in found) if found else (None,) * count


def _returns_none(fn):
    """Whether ``fn``'s source returns a tuple or list holding a literal ``None``
    (``return grad_x, None``: an input not differentiated, autograd style), or may (its
    source cannot be read: defined in ``exec``'d code, a notebook cell without it)."""
    tree = _source_tree(fn) if fn is not None else None
    if tree is None:
        return fn is not None
    return any(isinstance(node.value, (ast.Tuple, ast.List)) and any(
        isinstance(e, ast.Constant) and e.value is None for e in node.value.elts)
        for node in _own_returns(tree))


#: Two return statements naming one value differently: it is named by neither.
_CONFLICT = object()


def _agree(a, b):
    """The name two return statements give one value: a ``None`` (``return dx, None,
    None`` on an early branch, an expression) says nothing; different names conflict."""
    if a is None or b is None:
        return b if a is None else a
    return a if a == b else _CONFLICT


def _named_candidate(name, candidates, taken):
    """The index in ``candidates`` of the one parameter ``name`` (of :func:`_value_name`)
    is the gradient of by :func:`~gradcheck.protocol.discovery.grad_candidates` (``dW``,
    ``grad_W``, ``W_grad`` ...; a key also by the parameter's own name: ``grads['W']``),
    exactly or else ignoring case; ``None`` when none or several are."""
    if name is None:
        return None
    kind, text = name
    for fold in (str, str.lower):
        hits = [i for i, (n, _) in enumerate(candidates) if i not in taken and fold(text) in {
            fold(c) for c in grad_candidates(n) + ([n] if kind == "key" else [])}]
        if hits:
            return hits[0] if len(hits) == 1 else None
    return None


def match_returned(shapes, candidates, names=None):
    """Match the parameter gradients a backward returned to the parameters: by the name
    it returns each under (:func:`returned_names`), the rest by shape in order.

    Parameters
    ----------
    shapes : list of tuple
        The shapes of the gradients returned after the inputs' ones, in order.
    candidates : list of (str, tuple)
        The layer's floating array attributes ``forward`` neither rebinds nor writes, with
        their shapes, in the order they were defined.
    names : sequence, optional
        For each gradient, the pair of :func:`_value_name` it is returned under, or ``None``.

    Returns
    -------
    (matched, by_name, ambiguous) : (list of str or None, list of bool, bool)
        The parameter of each gradient (``None``: one matches none). A gradient whose name
        is a gradient name of a parameter of its shape (or of it with axes of length 1
        kept, ``(1, D)`` for ``(D,)``) is that parameter's (``by_name``); any other is the
        first candidate left after the previous such match of its shape. ``ambiguous``:
        some gradient matched by order fits more than one of the candidates left, so the
        order of definition decided.
    """
    names = list(names or ()) + [None] * (len(shapes) - len(names or ()))
    matched, taken = [None] * len(shapes), set()
    for k, (shape, name) in enumerate(zip(shapes, names)):
        i = _named_candidate(name, candidates, taken)
        if i is not None and keepdims_of(shape, candidates[i][1]):
            matched[k] = i
            taken.add(i)
    by_name = [m is not None for m in matched]
    start, ambiguous = 0, False
    for k, shape in enumerate(shapes):
        if by_name[k]:
            continue
        fits = [i for i in range(start, len(candidates))
                if i not in taken and keepdims_of(shape, candidates[i][1])]
        if not fits:
            return None, by_name, ambiguous
        ambiguous = ambiguous or len(fits) > 1 and any(
            candidates[i][1] == candidates[fits[0]][1] for i in fits[1:])
        matched[k], start = fits[0], fits[0] + 1
        taken.add(fits[0])
    return [candidates[i][0] for i in matched], by_name, ambiguous


def _reordered(names, candidates):
    """``"; backward returns Wh's gradient before Wx's ..."`` when the gradients of two
    parameters of one shape are returned in another order than the layer defines them:
    each is checked as its name says, but a training loop pairing parameters and
    gradients in definition order (``zip(params, grads)``) would give each the other's."""
    where = {n: i for i, (n, _) in enumerate(candidates)}
    shape = dict(candidates)
    for k, a in enumerate(names):
        for b in names[k + 1:]:
            if shape[a] == shape[b] and where[a] > where[b]:
                return (f"; backward returns {a}'s gradient before {b}'s, another order than "
                        "the layer defines them: each was checked as its name says, but a "
                        "training loop pairing parameters and gradients in definition order "
                        "(zip(params, grads)) would give each the other's")
    return ""


def _returned_note(count, names, by_name, said, order, state):
    """The report's note of :meth:`CallLayer.find_returned`: which parameters' gradients
    were read from backward's return value and how each was matched (by the name it is
    returned under, or by shape and order, ``order`` the candidates when that was
    ambiguous), and the arrays forward writes that were left out as state."""
    named = [f"{said[k][1]} -> {n}" for k, n in enumerate(names) if by_name[k]]
    ordered = [n for k, n in enumerate(names) if not by_name[k]]
    misfit = [f"{said[k][1]} ({n}'s shape)" for k, n in enumerate(names)
              if not by_name[k] and said[k] is not None and _named_candidate(
                  said[k], [(m, None) for m in names], set()) is not None]
    why = (f"the names backward returns them under do not fit their shapes: "
           f"{', '.join(misfit)}; check them" if misfit else
           "backward's return statement names them by no parameter's gradient name")
    how = []
    if named:
        how.append(f"by the names backward returns them under ({', '.join(named)})")
    if ordered:
        how.append(f"{', '.join(ordered)} by shape and order ({why})" if named else
                   f"by shape and order ({why})")
    note = (f"backward returns {count} gradients: after the input's, those of "
            f"{', '.join(names)} were read from its return value, matched to the parameters "
            + "; ".join(how))
    if order:
        note += ("; parameters of one shape were matched in the order the layer defines "
                 f"them ({', '.join(order)}): a backward returning them in another order FAILs")
    if state:
        note += (f"; {', '.join(state)} (written by forward: state) were not taken as "
                 "parameters")
    return note


def _is_output(v):
    """Whether a member of a tuple ``forward`` returned is an output (an array or a number),
    not a cache it returns beside them (a dict, an object, ``None``)."""
    return isinstance(v, (np.ndarray, numbers.Number)) and not isinstance(v, bool)


def floating_array(v):
    """Whether ``v`` is a floating ndarray (an input or parameter the check differentiates)."""
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def _array_parameters(fn):
    """The positional parameters of ``fn`` that can take an array: no default, or ``None``
    (``h_prev=None``); not ``retain_derived=True`` or ``retain_grads=True`` (numpy-ml's
    flags), not a train/eval switch. ``None`` when ``fn`` takes ``*args`` or has no
    signature."""
    sig = signature(fn)
    if sig is None or any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return None
    return [p for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default in (p.empty, None) and p.name not in SWITCH_NAMES]


def _defaulted_dout(fn, skip, lr=None):
    """``[name]`` of ``fn``'s upstream gradient when it has a number or array default (a
    loss's ``backward(dout=1.0)``): the first positional parameter after the ``skip``
    inputs, not a switch, a flag (``retain_grads=True``) or the learning rate ``lr``;
    else ``[]``."""
    sig = signature(fn)
    if sig is None:
        return []
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][skip:]
    if params and params[0].name not in SWITCH_NAMES and params[0].name != lr and (
            isinstance(params[0].default, (numbers.Number, np.ndarray))
            and not isinstance(params[0].default, (bool, np.bool_))):
        return [params[0].name]
    return []


#: ``{(code object, name, n): bool}`` of :func:`unpacks`: ``douts_taken`` asks it on every
#: forward of a layer with several outputs, and the answer is the bytecode's alone.
_UNPACKS = {}


def unpacks(fn, name, n):
    """Whether ``fn`` takes its parameter ``name`` apart into ``n`` values: ``a, b = name``
    with ``n`` targets, or uses it only as ``name[0]`` .. ``name[n - 1]`` (constant
    indexes, one at least 1): a ``backward(self, grads)`` of a layer with ``n`` outputs
    that takes their upstream gradients as one tuple. Read from the bytecode (a layer
    made by ``exec`` has no source); ``False`` when there is none. Read once per code
    object (:data:`_UNPACKS`).
    """
    code = getattr(unwrapped(fn), "__code__", None)
    if code is None:
        return False
    key = (code, name, n)
    if key not in _UNPACKS:
        if len(_UNPACKS) >= 1024:  # a long-lived process checking many functions
            _UNPACKS.clear()
        _UNPACKS[key] = _unpacks_code(code, name, n)
    return _UNPACKS[key]


def _unpacks_code(code, name, n):
    """:func:`unpacks` read from the code object ``code``."""
    import dis

    ops = [i for i in dis.get_instructions(code) if i.opname != "CACHE"]
    indexes = []
    for i, op in enumerate(ops):
        if not (op.opname in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW")
                and op.argval == name):
            continue
        nxt = ops[i + 1:i + 3]
        if nxt and nxt[0].opname == "UNPACK_SEQUENCE":
            if nxt[0].arg == n:
                return True
            indexes.append(None)
        elif len(nxt) == 2 and nxt[0].opname == "LOAD_CONST" and type(nxt[0].argval) is int \
                and (nxt[1].opname == "BINARY_SUBSCR" or nxt[1].argrepr == "[]"):  # 3.14
            indexes.append(nxt[0].argval)
        else:
            indexes.append(None)
    return bool(indexes) and all(k is not None and 0 <= k < n for k in indexes) \
        and max(indexes) >= 1


def _one_list_input(fn, values):
    """Whether a list of arrays is one input of ``forward`` (a list it takes, as numpy-ml's
    ``Add.forward(X, retain_derived=True)``) rather than its positional inputs: more
    arrays than ``forward`` has parameters that can take one (:func:`_array_parameters`)."""
    params = _array_parameters(fn)
    if params is None or len(values) < 2 or not all(isinstance(v, np.ndarray) for v in values):
        return False
    return len(values) > len(params)


def _one_dict_input(fn, inputs):
    """Whether a dict is the one input of ``forward`` (``forward(self, inputs)`` reading
    ``inputs["x"]``) rather than its keyword inputs: ``forward`` takes one input, none of
    the dict's keys names a parameter of it, it takes no ``**kwargs``, and the dict holds
    an array under string keys."""
    sig, params = signature(fn), _array_parameters(fn)
    if sig is None or params is None or len(params) != 1 or not inputs:
        return False
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return False
    return (all(isinstance(k, str) and k not in sig.parameters for k in inputs)
            and any(isinstance(v, np.ndarray) for v in inputs.values()))


def _why_not(v):
    """Why input ``v`` is passed through untouched."""
    if isinstance(v, np.ndarray):
        kind = {"b": "boolean (a mask)", "i": "integer (labels or indices)",
                "u": "integer (labels or indices)"}.get(v.dtype.kind, f"dtype {v.dtype}")
        return f"not differentiated: {kind}, passed through untouched"
    if isinstance(v, dict):
        return "not differentiated: a dict (options/state: restored after every call)"
    return f"not differentiated: {type(v).__name__}, passed through untouched"


def _unprefixed(text):
    """``text`` without the wrapper's ``layer.`` prefix of the names it quotes unquoted
    (``layer.theta`` -> ``theta``, ``layer['enc.fc'].W`` -> ``['enc.fc'].W``;
    ``layer.layer.W``, a sub-layer named ``layer``, keeps its own)."""
    return re.sub(r"(?<![\w.'\"])layer(\.|(?=\[))", "", text)


def _read_inputs(fn, inputs, name):
    """``(keyword, names, values)`` of the inputs a tuple, list or dict gives ``fn``:
    positional (a tuple or list; a list forward takes whole, numpy-ml's ``Add``), or by
    keyword (a dict, in forward's order: the order backward returns gradients in), or the
    one dict ``forward(inputs)`` takes whole."""
    if isinstance(inputs, dict) and _one_dict_input(fn, inputs):
        inputs = (inputs,)  # forward(inputs) takes the dict itself: its keys are inputs
    if isinstance(inputs, dict):
        names = list(inputs)
        values = list(inputs.values())
        sig = signature(fn)
        if sig is not None and not any(p.kind == p.VAR_KEYWORD
                                       for p in sig.parameters.values()):
            unknown = [k for k in names if k not in sig.parameters]
            if unknown:
                raise GradCheckInputError(
                    f"the dict of inputs names {unknown}, which forward{sig} does not "
                    "take", layer=name)
        if sig is not None:  # in forward's order, the order backward returns gradients in
            order = {p: i for i, p in enumerate(sig.parameters)}
            names.sort(key=lambda k: order.get(k, len(order)))
            values = [inputs[k] for k in names]
    else:
        values = list(inputs)
        if isinstance(inputs, list) and _one_list_input(fn, values):
            values = [values]  # forward(X) takes the list itself (numpy-ml's Add)
        names, takes = forward_names(fn, len(values))
        if takes is not None and len(values) > takes:
            raise GradCheckInputError(
                f"{len(values)} inputs were given as a {type(inputs).__name__}, but "
                f"forward{signature(fn)} takes {takes}{_switch_apart(fn, values, takes)} "
                "(tried: a tuple/list = positional inputs of forward, a dict = keyword "
                "inputs); for one array input pass np.asarray(x)", layer=name)
    return isinstance(inputs, dict), names, values


class CallLayer:
    """The user's layer, called with several inputs and outputs, as one layer.

    Parameters
    ----------
    layer : object
        Has ``forward(*inputs[, train_flg])`` and ``backward(*douts)``.
    inputs : tuple, list or dict
        Positional (tuple/list) or keyword (dict) inputs of ``forward``.
    name : str
        The name the report uses (the layer's class name).
    signature_of : callable or None
        Where the input names come from (default ``layer.forward``).
    backward_kwargs : dict or None
        Keyword arguments given to every ``backward`` call (``check_layer``'s
        ``backward_kwargs``); one that names the learning rate fixes the rate every call
        passes (a step it takes is still read as the gradient and undone).

    Attributes
    ----------
    names : list of str
        Every input's name, in order.
    targets : list of str
        The floating inputs' names (the first is the engine's ``x``).
    skipped : list of (str, str)
        The inputs not differentiated, with the reason.
    x : ndarray
        The first floating input (a float64 zero placeholder when none is).
    inputs : dict of str to ndarray
        The other floating inputs (perturbed in place by the check).
    input_grads : dict of str to ndarray
        Their gradients after :meth:`backward`.

    Raises
    ------
    GradCheckInputError
        More positional inputs than ``forward`` takes, an unknown keyword.
    """

    def __init__(self, layer, inputs, name, signature_of=None, backward_kwargs=None):
        self.layer = layer
        self.backward_kwargs = dict(backward_kwargs or {})
        self._gradcheck_name = name
        fn = (signature_of or getattr(layer, "_gradcheck_signature", None)
              or layer_method(layer, "forward"))
        self.keyword, self.names, values = _read_inputs(fn, inputs, name)
        #: forward's parameter names, and the members of an input that is a list of
        #: floating arrays (``X[0]``, ``X[1]``: each a target of its own) or the one dict
        #: forward takes (named by their keys: the floating ones targets, the others passed
        #: through); ``dict_input``: that input's name
        self.call_names, self.members = list(self.names), {}
        self.dict_input = (self.names[0] if not self.keyword and len(values) == 1
                           and isinstance(values[0], dict) and _one_dict_input(fn, values[0])
                           else None)
        self.names, values = self._expand_lists(self.names, values)
        #: inputs backward takes before the upstream gradients (Torch7), or after (NNFS)
        self.inputs_first = inputs_first(layer)
        self.labels = [] if self.inputs_first else _loss_labels(layer, self.names)
        #: forward's input ("" its output) given again after the gradients (:func:`taken_again`)
        self.again = taken_again(layer, self.inputs_first)
        #: a model's loss (:class:`FunctionPair` over ``model.params``): inputs not targets
        self.model = layer.model if isinstance(layer, FunctionPair) else None
        model = self.model is not None
        self.targets = [n for n, v in zip(self.names, values) if floating_array(v)
                        and n not in self.labels and not model]
        self.shape = tuple(np.shape(values[0])) if values and isinstance(
            values[0], np.ndarray) else ()
        self.skipped = [(n, self._why_skipped(n, v)) for n, v in zip(self.names, values)
                        if n not in self.targets]
        first = self.targets[0] if self.targets else None
        self.x = values[self.names.index(first)] if first else np.zeros(1)
        # private copies: the check perturbs them in place
        self.inputs = {n: np.array(v, copy=True) for n, v in zip(self.names, values)
                       if n in self.targets[1:]}
        self.passthrough = {n: v for n, v in zip(self.names, values) if n not in self.targets}
        self.input_grads = {n: None for n in self.targets[1:]}
        self.flag = flag_name(fn)  # a function pair's: its forward function's switch
        self._outputs_unknown()
        self._steps_unknown()
        #: a method pair ``forward(x) -> (out, cache)``, ``backward(dout, cache)``: the
        #: layer's methods as a :class:`FunctionPair`, which threads each forward's cache
        #: into the backward that follows it (``None``: backward takes no cache)
        self.pair = (_method_pair(layer, self.backward_kwargs, name)
                     if cache_parameter(layer, self.backward_kwargs) else None)
        #: whether an input is a target (check_layer sets it from ``wrt``; when none is, a
        #: backward that returns no input gradient is accepted: :meth:`_no_input_gradients`)
        self.dx_wanted = True

    def _outputs_unknown(self):
        """What the first forward calls tell about the outputs (none made yet)."""
        self.out_shapes = None
        self.last_out = None  # what the last forward returned (for backward_again)
        #: the keys of a dict output; ``[(index, type)]`` of a tuple output's members that
        #: are no array (a cache), left out of the check (:meth:`_packed`); whether they
        #: were a list (:meth:`split` gives a one-parameter backward the list of douts)
        self.out_keys, self.cache_outputs, self.out_list = None, [], False
        #: ``[(index, shape)]`` of the outputs backward takes no gradient for (not checked)
        self.dropped_outputs = []
        #: backward takes the upstream gradients of all outputs as one parameter
        #: (:meth:`douts_taken`, :meth:`split`)
        self.douts_as_one = False

    def _steps_unknown(self):
        """What backward steps, updates and returns (found by the calls of
        :meth:`find_steps`, :meth:`find_updates`, :meth:`find_returned`: none made yet)."""
        layer = self.layer
        self.lr = learning_rate_parameter(layer)
        #: the rate the user gave in backward_kwargs, passed as the rate (None: not given)
        self.rate_given = (self.backward_kwargs.pop(self.lr[0], None)
                           if self.lr is not None else None)
        #: the value every call passes it: LEARNING_RATE, or backward's own default when it
        #: steps nothing (an ELU's or leaky ReLU's alpha is no learning rate: find_steps)
        self.rate = LEARNING_RATE if self.rate_given is None else self.rate_given
        #: the learning rate the layer holds as an attribute instead (Practical_DL's
        #: ``self.learning_rate``), and its value: set to :attr:`rate` around every backward
        #: call once backward is found to step with it (find_steps), put back after each
        self.lr_attr = learning_rate_attribute(layer)
        self.own_rate = resolve(layer, self.lr_attr) if self.lr_attr is not None else None
        self.stepped = ()  # the arrays backward steps itself (find_steps)
        #: how much backward's dx changed with the rate, the arrays it changes by amounts
        #: that depend on the rate but not in proportion to it (find_steps)
        self.lr_dx_change, self.lr_unscaled = None, ()
        #: the optimizer objects the layer holds (``self.W_opt``, ML-From-Scratch), and the
        #: parameters whose gradient backward passes to their ``update`` (find_updates)
        self.optimizers = optimizer_paths(layer)
        self.updated = ()
        #: the parameters of the gradients backward returns after dx (:meth:`find_returned`),
        #: and the batch size m that scales a pair's (:mod:`~gradcheck.protocol.batchmean`)
        self.returned, self.mean_scale, self.mean_found = (), None, ()
        self.step_calls = (0, 0)  # the forward and backward calls find_steps made
        self.step_grads = {}

    def _why_skipped(self, name, value):
        """Why the input ``name`` is not a target (a pair's input that backward takes
        again by name says so)."""
        if self.model is not None and floating_array(value):
            return _MODEL_INPUT
        if name in self.labels:
            return _LABELS
        again = self.layer.by_name if isinstance(self.layer, FunctionPair) else ()
        return _why_not(value) + (" (and given to backward again by name)"
                                  if name in again else "")

    # -- what the report calls the targets ----------------------------------------------
    def display(self, internal):
        """The report's name of an internal target name (``"x"``, ``"inputs['h']"``,
        ``"layer.W"``; a model's ``"layer.model.params['W1']"`` is ``"W1"``)."""
        if internal == "x" and self.targets:
            return self.targets[0]
        if self.model is not None:
            for k in self.model.params:
                if internal == f"layer.model.params[{k!r}]":
                    return k
        for n in self.targets[1:]:
            if internal == f"inputs[{n!r}]":
                return n
        if internal.startswith(("layer.", "layer[")):  # layer['enc.fc'].W: ['enc.fc'].W
            return internal[len("layer."):] if internal[5] == "." else internal[len("layer"):]
        return internal

    def internal(self, name):
        """The inverse of :meth:`display` (for ``wrt``, ``params``, ``expect_zero``)."""
        if self.targets and name == self.targets[0]:
            return "x"
        if self.model is not None and name in self.model.params:
            return f"layer.model.params[{name!r}]"
        if name in self.targets[1:]:
            return f"inputs[{name!r}]"
        return name if name == "x" else "layer" + ("" if name.startswith("[") else ".") + name

    def internal_names(self, names):
        """``wrt``/``expect_zero`` names as the wrapper knows them (``None`` stays ``None``)."""
        if names is None:
            return None
        return [self.internal(n) for n in names]

    def internal_params(self, params):
        """A user's ``params={"W": "dW"}`` (names on the user's layer) for the wrapper."""
        if not isinstance(params, dict):
            return params  # None, or invalid: check_params_mapping says what is wrong
        return {("layer." + p if isinstance(p, str) else p):
                ("layer." + g if isinstance(g, str) else g) for p, g in params.items()}

    def rename(self, results, findings, not_checked):
        """Results, findings and the not-checked list with the report's names."""
        from dataclasses import replace

        results = tuple(replace(r, name=self.display(r.name)) for r in results)
        findings[:] = [self._renamed_finding(f) if f.target else
                       replace(f, message=_unprefixed(f.message)) for f in findings]
        hidden = set(self.names) | set(self.call_names) | (
            {"cache"} if isinstance(self.layer, FunctionPair) else set())
        own = ("inputs[", "input_grads[") + (
            ("layer.cache[", "layer.cache.") if isinstance(self.layer, FunctionPair) else ())
        not_checked = list(self.skipped) + [(self.display(n), _unprefixed(why))
                                            for n, why in not_checked
                                            if self.display(n) not in hidden
                                            and not n.startswith(own)]
        if isinstance(self.layer, FunctionPair):
            not_checked += [(n, "returned by forward besides its output and cache; backward "
                                "takes no gradient of it: not differentiated")
                            for n in extra_outputs(self.layer.forward_fn,
                                                   self.layer.backward_fn)]
        return results, findings, not_checked

    def _renamed_finding(self, f):
        """``f`` with the report's target name, also where its message quotes it."""
        from dataclasses import replace

        shown = self.display(f.target)
        message = f.message.replace(repr(f.target), repr(shown))
        if f.target != "x":
            message = message.replace(f.target, shown)
        return replace(f, target=shown, message=_unprefixed(message))

    def shown_text(self, text):
        """``text`` with the report's names for the internal ones: each quoted name
        (``'x'``, ``"inputs['h']"``, ``'layer.layer.W'``: a sub-layer the user called
        ``layer``) as :meth:`display` shows it, then the unquoted ``inputs[...]``,
        ``input_grads[...]`` and the wrapper's ``layer.`` prefix of a name."""
        def quoted(m):
            name = m.group(1) if m.group(1) is not None else m.group(2)
            return repr(self.display(name))

        text = re.sub(r"'([^'\\]*)'|\"([^\"\\]*)\"", quoted, text)
        for n in self.targets[1:]:
            text = text.replace(f"input_grads[{n!r}]", f"d{n}").replace(f"inputs[{n!r}]", n)
        return _unprefixed(text)

    def renamed(self, exc):
        """``exc`` with the report's target names (``exc`` itself when nothing changes)."""
        if exc.target is None or self.display(exc.target) == exc.target:
            return exc
        shown = self.display(exc.target)
        text = str(exc)
        prefix = f"layer {exc.layer}, target {exc.target!r}: "
        body = self.shown_text(text[len(prefix):] if text.startswith(prefix) else text)
        new = type(exc).__new__(type(exc))
        GradCheckInputError.__init__(new, body, layer=exc.layer, target=shown)
        new.index = getattr(exc, "index", None)
        return new

    def input_params(self):
        """``{param: grad}`` of the floating inputs after the first."""
        return {f"inputs[{n!r}]": f"input_grads[{n!r}]" for n in self.targets[1:]}

    # -- the protocol --------------------------------------------------------------------
    def _expand_lists(self, names, values):
        """``(names, values)`` with every input that is a list of floating arrays replaced
        by its members ``name[i]`` (recorded in :attr:`members`)."""
        flat_names, flat_values = [], []
        for n, v in zip(names, values):
            if n == self.dict_input:
                self.members[n] = list(v)
                flat_names += self.members[n]
                flat_values += list(v.values())
            elif isinstance(v, list) and v and all(isinstance(a, np.ndarray) for a in v) \
                    and any(floating_array(a) for a in v):
                bad = [i for i, a in enumerate(v) if not floating_array(a)]
                if bad:  # a list of index arrays alone is passed through, as any list
                    raise GradCheckInputError(
                        f"input {n} is a list of arrays whose member {n}[{bad[0]}] has dtype "
                        f"{v[bad[0]].dtype}: the members of a list input are differentiated, "
                        "so they must be floating (np.asarray(a, dtype=float))",
                        layer=self._gradcheck_name, target=f"{n}[{bad[0]}]")
                self.members[n] = [f"{n}[{i}]" for i in range(len(v))]
                flat_names += self.members[n]
                flat_values += list(v)
            else:
                flat_names.append(n)
                flat_values.append(v)
        return flat_names, flat_values

    def _args(self, x):
        values = dict(self.passthrough)
        values.update(self.inputs)
        if self.targets:
            values[self.targets[0]] = x
        return [{m: values[m] for m in self.members[n]} if n == self.dict_input
                else [values[m] for m in self.members[n]] if n in self.members else values[n]
                for n in self.call_names]

    def forward(self, x, train_flg=True):
        """``layer.forward(*inputs)``, its outputs packed into one array."""
        self.last_x = x
        ordered = self._args(x)
        kwargs = {self.flag: flag_value(self.flag, train_flg)} if self.flag else {}
        forward = self.pair.forward if self.pair else layer_method(self.layer, "forward")
        if self.keyword:
            out = forward(**dict(zip(self.call_names, ordered)), **kwargs)
        else:
            out = forward(*ordered, **kwargs)
        if out is None and isinstance(lookup(self.layer, "output"), np.ndarray):
            out = self.layer.output  # "Neural Networks from Scratch": forward keeps self.output
        self.last_out = out
        return self._packed(out)

    def _packed(self, out):
        """What ``forward`` returned, as one array: a tuple's (or list's) outputs, or a dict's
        values (:attr:`out_keys`), flattened one after the other; its members that are no
        array or number (a cache dict: ``(loss, {"probs": p})``) left out
        (:attr:`cache_outputs`), a single output left as one array."""
        self.out_keys = None
        if isinstance(out, dict) and out and all(_is_output(v) for v in out.values()):
            self.out_keys, out = list(out), tuple(out.values())
        if isinstance(out, (tuple, list)):
            self.out_list = isinstance(out, list)
            self.cache_outputs = [(i, type(o).__name__) for i, o in enumerate(out)
                                  if not _is_output(o)]
            if self.cache_outputs:
                out = [o for o in out if _is_output(o)]
                if len(out) == 1:  # (loss, cache): the loss alone
                    self.out_shapes, self.dropped_outputs = None, []
                    return out[0]
            arrays = [np.asarray(o) for o in out]
            taken = (1 if self._loss_and_prediction(arrays) else
                     self.douts_taken(len(arrays), keyed=self.out_keys is not None))
            self.dropped_outputs = [(i, a.shape) for i, a in enumerate(arrays) if i >= taken]
            arrays = arrays[:taken]
            self.out_shapes = [a.shape for a in arrays]
            return np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
        self.out_shapes, self.dropped_outputs, self.cache_outputs = None, [], []
        return out

    def _loss_and_prediction(self, arrays):
        """Whether forward's outputs are a loss whose backward takes the labels, returned
        first as a scalar, beside its prediction (``return loss, probs`` of a
        ``backward(probs, labels)``): the check is of the loss, and the prediction is what
        backward is given (:meth:`_loss_backward`), not an output."""
        return bool(self.labels) and len(arrays) > 1 and arrays[0].size == 1 and any(
            a.shape == np.shape(self.last_x) for a in arrays[1:])

    def split(self, dout):
        """The packed upstream gradient as one array per output ``backward`` takes."""
        if self.out_shapes is None:
            return (dout,)
        parts, start = [], 0
        for shape in self.out_shapes:
            size = int(np.prod(shape, dtype=np.int64))
            parts.append(dout.reshape(-1)[start:start + size].reshape(shape))
            start += size
        if self.douts_as_one:  # one parameter: a dict under a dict output's keys, a list
            # for a list output, else a tuple
            return (dict(zip(self.out_keys, parts)) if self.out_keys
                    else parts if self.out_list else tuple(parts),)
        return tuple(parts)

    def douts_taken(self, n, keyed=False):
        """How many of ``n`` outputs ``backward`` takes upstream gradients for: all, or fewer
        when its signature has fewer positional parameters (numpy-ml's ``LSTMCell``:
        ``forward`` returns ``(A, C)``, ``backward(dLdA)``); the outputs after them are
        left out of the check (:meth:`forward`, :attr:`dropped_outputs`). A defaulted
        upstream gradient (a loss's ``backward(dout=1.0)`` beside ``(loss, probs)``) is one.
        A single one that ``backward`` unpacks into ``n`` (``dh, dc = grads``) takes all
        ``n``, as one tuple (a list for a list output: :attr:`douts_as_one`, :meth:`split`);
        so does a single one beside a dict of outputs (``keyed``, even of one key), as a
        dict of them under the outputs' keys."""
        backward = layer_method(self.layer, "backward")
        params = _array_parameters(backward)
        self.douts_as_one = False
        if params is None:
            return n
        names = [p.name for p in params][self.inputs_first:len(params) - len(self.again)]
        if self.lr is not None and self.lr[0] in names:
            names.remove(self.lr[0])
        if not names:
            names = _defaulted_dout(backward, self.inputs_first,
                                    self.lr[0] if self.lr is not None else None)
        if len(names) == 1 and (keyed or n > 1 and unpacks(backward, names[0], n)):
            self.douts_as_one = True
            return n
        taken = len(names)
        return taken if 1 <= taken < n else n

    def pack(self, dout, shapes=None):
        """A user's tuple ``dout`` (one array per output) as the packed array.

        Raises
        ------
        GradCheckInputError
            Not one array per output, or one of the wrong shape.
        """
        shapes = self.out_shapes if shapes is None else shapes
        if shapes is None:
            raise GradCheckInputError(
                f"dout is a {type(dout).__name__} of {len(dout)}, but forward returned one "
                "array; pass one array", layer=self._gradcheck_name)
        if len(dout) != len(shapes):
            raise GradCheckInputError(
                f"dout is a tuple of {len(dout)} arrays, but forward returned "
                f"{len(shapes)} outputs; pass one upstream gradient per output",
                layer=self._gradcheck_name)
        parts = []
        for i, (d, shape) in enumerate(zip(dout, shapes)):
            d = np.asarray(d, dtype=np.float64)
            if d.shape != shape:
                raise GradCheckInputError(
                    f"dout[{i}] has shape {d.shape}, but output {i} has shape {shape}",
                    layer=self._gradcheck_name)
            parts.append(d.reshape(-1))
        return np.concatenate(parts)

    def backward(self, dout):
        """``layer.backward(*douts)``; returns the first floating input's gradient and keeps
        the others in ``input_grads``."""
        if self.labels:
            return self._loss_backward(dout)
        try:
            grads = self._call_backward(self.split(dout))
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            if not self.dropped_outputs:
                raise
            raise LayerCallError(
                f"backward() raised {type(exc).__name__}: {exc} (forward returns "
                f"{len(self.out_shapes) + len(self.dropped_outputs)} outputs, and backward "
                f"was given the upstream gradient of the first {len(self.out_shapes)}, one "
                "per parameter it takes: a backward that takes them all as one tuple unpacks "
                "it as dh, dc = grads, or reads grads[0], grads[1])",
                layer=self._gradcheck_name, target=self.display("x")) from exc
        if not self.targets:
            if isinstance(grads, (tuple, list)):
                self._keep_returned(list(grads))
            return np.zeros(1)  # no floating input (an embedding): parameters only
        if grads is None:
            grads = kept_input_gradient(self.layer)
            if grads is None and not self.dx_wanted:
                return self._no_input_gradients()
            if grads is None:
                raise LayerProtocolError(
                    "backward() returned None and the layer has no dinputs attribute; it must "
                    "return the gradient of each floating input (" + ", ".join(self.targets)
                    + "); to check the parameters alone, pass wrt=[...] naming them, without "
                    "the inputs", layer=self._gradcheck_name, target=self.display("x"))
        if isinstance(grads, dict) and self.dict_input is not None:
            grads = self._keyed_grads(grads)
        elif isinstance(grads, (tuple, list)) and self.dict_input is not None:
            grads = self._named_grads(list(grads))
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        grads = self._by_target(self._keep_returned(list(grads)))
        for n in self.targets[1:]:
            self.input_grads[n] = grads[n] if self.mean_scale is None else (
                self.mean_scale * np.asarray(grads[n]))
        return grads[self.targets[0]] if self.targets else np.zeros(1)

    def _no_input_gradients(self):
        """Zeros for the other inputs' gradients of a backward that returned none, when no
        input is a target (``wrt`` names parameters only), and ``None`` for the first: the
        adapter accepts it so (and the report says so)."""
        for n in self.targets[1:]:
            self.input_grads[n] = np.zeros_like(self.inputs[n])

    def _named_grads(self, grads):
        """The tuple a backward returns for the dict forward takes, in target order: by
        the names its return statement gives them (``return dx, dg`` for keys ``"g"``,
        ``"x"`` in any order) when each names a different key, else in key order."""
        if len(grads) != len(self.targets):
            return grads
        names = returned_names(layer_method(self.layer, "backward"), len(grads))
        candidates, taken = [(t, None) for t in self.targets], set()
        order = []
        for name in names:
            i = _named_candidate(name, candidates, taken)
            if i is None:
                return grads
            taken.add(i)
            order.append(i)
        placed = [None] * len(grads)
        for g, i in zip(grads, order):
            placed[i] = g
        return placed

    def _keyed_grads(self, grads):
        """The gradients of a backward that returns a dict for the dict forward takes
        (``{"x": dx}``), in target order; a target missing from it is an error naming it
        (a key that is no target, ``"mask": None``, is left out)."""
        missing = [n for n in self.targets if n not in grads]
        if missing:
            raise LayerProtocolError(
                f"backward() returned a dict with keys {list(grads)}, without the gradient of "
                f"the floating input(s) {missing} of forward's dict {self.dict_input!r}: "
                "return one per floating key (pass a mask as a boolean array, "
                "mask.astype(bool), and it is passed through undifferentiated)",
                layer=self._gradcheck_name, target=missing[0])
        return [grads[n] for n in self.targets]

    def _loss_backward(self, dout):
        """A loss whose ``backward(dvalues, y_true)`` takes the prediction and the labels
        (NNFS), not an upstream gradient, and returns the gradient of the mean loss.

        ``dvalues`` is what the training loop passes: the output the layer keeps in
        ``self.output`` when it has the input's shape (the combined softmax and
        cross-entropy), else the prediction itself (the loss's own input). The result
        is scaled into the gradient of ``sum(out * dout)``: by ``dout`` for a scalar
        loss, by ``N * dout[i]`` on sample ``i`` for ``N`` per-sample losses (each
        sample's loss depends on its own row).
        """
        x = self.last_x
        kept = lookup(self.layer, "output")
        first = kept if isinstance(kept, np.ndarray) and kept.shape == np.shape(x) else x
        if isinstance(self.last_out, (tuple, list)) and self.dropped_outputs:
            first = next((o for o in self.last_out[1:] if np.shape(o) == np.shape(x)),
                         first)  # (loss, probs): backward(probs, y)
        grads = self._call_backward((first,) + tuple(self.passthrough[n] for n in self.labels))
        if grads is None:
            grads = kept_input_gradient(self.layer)
        if isinstance(grads, (tuple, list)):
            grads = grads[0]
        if not isinstance(grads, np.ndarray):
            raise LayerProtocolError(
                "backward(dvalues, " + ", ".join(self.labels) + ") returned "
                f"{type(grads).__name__} and the layer has no dinputs array; it must return "
                "(or keep in self.dinputs) the gradient of the mean loss",
                layer=self._gradcheck_name, target=self.display("x"))
        d = np.asarray(dout)
        if d.size == 1:
            return grads * d.reshape(())
        n = len(x)
        if d.shape != (n,):
            raise LayerProtocolError(
                f"forward returned {self._returned()}; a loss whose backward takes the "
                f"labels ({', '.join(self.labels)}) must return a scalar or one loss per "
                f"sample ({n},), or a scalar loss first and its prediction (of the input's "
                f"shape {np.shape(x)}) after it, which backward is given",
                layer=self._gradcheck_name, target=self.display("x"))
        return grads * (n * d).reshape((n,) + (1,) * (grads.ndim - 1))

    def _returned(self):
        """What the last ``forward`` returned, as a message says it: ``shape (5, 4)``, or
        ``a tuple of shapes (), (5, 4)``."""
        out = self.last_out
        if isinstance(out, (tuple, list)):
            shapes = ", ".join(str(np.shape(o)) for o in out)
            return f"a {type(out).__name__} of shapes {shapes}"
        return f"shape {np.shape(out)}"

    def _call_backward(self, douts, lr=None):
        """``layer.backward(*douts)``; a backward that takes a learning rate gets
        :data:`~gradcheck.protocol.update.LEARNING_RATE` (or ``lr``, raw), and the step it
        takes is read as the gradients of :attr:`stepped` and undone; the gradients a
        backward passes to its optimizers' ``update`` are recorded instead of applied
        (:class:`~gradcheck.protocol.update.UpdateRecorder`). Both are kept in
        :attr:`step_grads`."""
        backward = self._backward()
        douts = self.backward_inputs() + tuple(douts) + self.backward_again()
        if self.lr is None and self.lr_attr is None and not self.optimizers:
            grads = self._called(lambda: call_without_dout(backward, douts), douts)
            subtract_penalty(self.layer)
            return grads
        args, kwargs = douts, {}
        rate = self.rate if lr is None else lr
        run = lambda: call_without_dout(backward, douts)  # noqa: E731
        if self.lr is not None:
            name, positional = self.lr
            args, kwargs = (douts + (rate,), {}) if positional else (douts, {name: rate})
            run = lambda: backward(*args, **kwargs)  # noqa: E731
        # an attribute rate is set only once backward is found to step with it (an ELU's
        # self.alpha is left as it is)
        held = rate if lr is not None or self.stepped else None
        with rate_held(self.layer, self.lr_attr, held):
            if lr is not None:
                return self._called(run, args, kwargs)
            with StepReader(self.layer, self.stepped, self.rate) as reader, \
                    UpdateRecorder(self.layer) as recorder:
                grads = self._called(run, args, kwargs)
        self.step_grads = {**reader.grads, **recorder.grads}
        subtract_penalty(self.layer)
        return grads

    def _backward(self):
        """The layer's ``backward``, with :attr:`backward_kwargs` bound (a method pair's:
        its :attr:`pair`'s, which passes the cache of the last forward)."""
        if self.pair is not None:
            return self.pair.backward
        backward = layer_method(self.layer, "backward")
        return functools.partial(backward, **self.backward_kwargs) if self.backward_kwargs \
            else backward

    def _called(self, run, args, kwargs=None):
        """``run()``, one call of backward with ``args`` and ``kwargs``: a TypeError for
        required parameters of backward left unfilled is the clear error of
        :func:`~gradcheck.protocol.adapter.unpassed_error`."""
        try:
            return run()
        except TypeError as exc:
            missing = missing_arguments(self._backward(), args, kwargs)
            if missing:
                raise unpassed_error(self._gradcheck_name, missing) from exc
            raise

    def backward_inputs(self):
        """The inputs of the last ``forward`` that ``backward`` takes before the upstream
        gradients (:attr:`inputs_first`; none for the usual ``backward(dout)``)."""
        if not self.inputs_first:
            return ()
        return tuple(self._args(self.last_x)[:self.inputs_first])

    def backward_again(self):
        """The input and output of the last ``forward`` that ``backward`` takes after the
        upstream gradients (:attr:`again`; none for the usual ``backward(dout)``)."""
        if not self.again:
            return ()
        values = dict(zip(self.call_names, self._args(self.last_x)))
        return tuple(values[n] if n else self.last_out for n in self.again)

    def find_steps(self, train_flg, seed):
        """Find the arrays a backward that takes a learning rate (or reads the one the layer
        holds: :attr:`lr_attr`, set to each rate tried) steps itself
        (:func:`~gradcheck.protocol.update.stepped_arrays`: 1 forward, 2 backward calls,
        and 2 forward calls and one per array backward changes alike at both rates, when
        there is one); the layer's own error leaves none found (the check then reports
        it)."""
        held = {}

        def forward():
            out = self.forward(self.x.copy(), train_flg)
            from gradcheck.protocol.problem import default_dout

            held["dout"] = default_dout(seed, np.shape(out))
            return out

        self.step_calls = (1, 2)
        if self.lr is None and not self._rate_not_read(forward):
            self.stepped, self.lr_dx_change, self.lr_unscaled = (), None, ()
            return
        try:
            steps = stepped_arrays(
                self.layer, lambda lr: self._call_backward(self.split(held["dout"]), lr),
                forward)
        except Exception:  # noqa: BLE001 -- reported by the check's own calls
            self.stepped, self.lr_dx_change, self.lr_unscaled = (), None, ()
            return
        self.stepped, self.lr_dx_change, self.lr_unscaled = steps[:3]
        self.step_calls = (self.step_calls[0] - 1 + steps.forwards, 2)
        if self.lr is not None and not self.stepped and not self.lr_unscaled \
                and self.rate_given is None:
            default = _default_of(layer_method(self.layer, "backward"), self.lr[0])
            if default is not None:
                self.rate = default
            elif steps.unstepped_change is not None and not _has_default(
                    layer_method(self.layer, "backward"), self.lr[0]):
                raise unpassed_error(self._gradcheck_name, [self.lr[0]], (
                    f": no learning rate, since backward steps no array with it, but its "
                    f"returned gradient changes with it (by up to "
                    f"{steps.unstepped_change:.3g} between {self.lr[0]}={LEARNING_RATE:g} "
                    f"and {2 * LEARNING_RATE:g})"))

    def _rate_not_read(self, forward):
        """Keep as :attr:`lr_attr` the first rate the layer holds
        (:func:`~gradcheck.protocol.update.rate_candidates`) that ``forward`` does not read
        (:func:`~gradcheck.protocol.update.read_by_forward`, 2 forward calls each: a leaky
        ReLU's ``alpha`` is no learning rate); ``False`` when there is none."""
        tried = 0
        for path in rate_candidates(self.layer):
            tried += 1
            if not read_by_forward(self.layer, path, forward):
                self.lr_attr, self.own_rate = path, resolve(self.layer, path)
                break
        else:
            self.lr_attr = self.own_rate = None
        self.step_calls = (self.step_calls[0] + 2 * tried, self.step_calls[1])
        return self.lr_attr is not None

    def find_updates(self, train_flg, seed):
        """Find the parameters whose gradient backward passes to an optimizer's ``update``
        (1 forward, 1 backward call on a snapshot, counted in :attr:`step_calls`); the
        layer's own error leaves none found (the check's own calls report it).

        Returns
        -------
        int
            The ``update`` calls whose ``w`` is no array the layer holds.
        """
        from gradcheck.protocol.problem import default_dout
        from gradcheck.protocol.state import StateSnapshot

        snapshot = StateSnapshot(self.layer)
        self.step_calls = (self.step_calls[0] + 1, self.step_calls[1] + 1)
        try:
            out = self.forward(self.x.copy(), train_flg)
            douts = self.split(default_dout(seed, np.shape(out)))
            with UpdateRecorder(self.layer) as recorder:
                self._backward()(*self.backward_inputs(), *douts,
                                                     *self.backward_again())
        except Exception:  # noqa: BLE001 -- reported by the check's own calls
            self.updated = ()
            return 0
        finally:
            snapshot.restore_all()
        self.updated = tuple(recorder.grads)
        return recorder.unmapped

    def own_paths(self):
        """Paths under this wrapper that are the toolkit's own bookkeeping or taken by
        other means (never walked by the parameter discovery): the wrapper's own
        attributes, the gradients read from a step, and for a model its parameters, their
        gradients, the cache of ``loss`` and the inputs (listed as not differentiated);
        the model's other arrays are walked and listed as not checked."""
        paths = {"step_grads"} | set(self.step_params({}))
        # the wrapper's bookkeeping (its copy of the model, names, shapes, ...)
        paths |= {k for k in vars(self) if k not in ("layer", "inputs", "input_grads")}
        if self.model is not None:
            paths |= {"layer.model.params", "layer.cache", "layer.param_grads", "passthrough"}
        return paths

    def layer_params(self):
        """``{param: gradient}`` of a model's parameters (:meth:`FunctionPair.model_params`)."""
        own = getattr(self.layer, "model_params", None)
        if not callable(own):
            return {}
        return {f"layer.{p}": f"layer.{g}" for p, g in own().items()}

    def step_params(self, params):
        """``{param: gradient}`` of the stepped arrays (and of the parameters whose gradients
        backward returns) that have no gradient attribute."""
        return {f"layer.{p}": f"step_grads[{p!r}]"
                for p in self.stepped + self.updated + self.returned
                if f"layer.{p}" not in params}

    def _keep_returned(self, grads):
        """``grads`` without the trailing parameter gradients of :attr:`returned`, which are
        kept in :attr:`step_grads`."""
        if not self.returned or len(grads) <= len(self.returned):
            return grads
        n = len(grads) - len(self.returned)
        self.step_grads = {**self.step_grads, **dict(zip(self.returned, grads[n:]))}
        return grads[:n]

    def find_returned(self, adapter, seed):
        """Match the gradients a backward returns after the input's (``return dx, dW, db``)
        to the layer's parameters (:func:`match_returned`); one forward and one backward
        call on a snapshot, counted in :attr:`step_calls`.

        Returns
        -------
        str or None
            The text of the report's note (``None``: backward returns no more gradients
            than inputs, or the layer raised: the check's own calls report it).

        Raises
        ------
        LayerProtocolError
            A returned gradient matches no parameter by shape.
        """
        from gradcheck.protocol.paths import attributes
        from gradcheck.protocol.problem import default_dout
        from gradcheck.protocol.state import StateSnapshot

        held = [(n, v) for n, v in attributes(self.layer).items() if floating_array(v)]
        snapshot, made = StateSnapshot(self), [0, 0]
        try:
            out = self.forward(self.x.copy(), adapter.train_flg)
            made[0] = 1
            moved = {id(s.obj) for s in snapshot.changed() if s.kind == "array"}
            grads = self._call_backward(self.split(default_dout(seed, np.shape(out))))
            made[1] = 1
            kept = attributes(self.layer)
        except Exception:  # noqa: BLE001 -- the check's own calls report it
            return None
        finally:
            snapshot.restore_all()
            self.step_calls = (self.step_calls[0] + made[0], self.step_calls[1] + made[1])
        extra = list(grads)[len(self.targets):] if isinstance(grads, (tuple, list)) else []
        if not extra or not all(isinstance(g, np.ndarray) for g in extra):
            return None
        # an array forward writes (running statistics) is the layer's state, never a parameter
        state = [n for n, v in held if kept.get(n) is v and id(v) in moved]
        candidates = [(n, v.shape) for n, v in held if kept.get(n) is v and id(v) not in moved]
        said = returned_names(layer_method(self.layer, "backward"), len(grads))
        names, by_name, ambiguous = match_returned(
            [g.shape for g in extra], candidates, said[len(self.targets):])
        if names is None:
            raise LayerProtocolError(
                f"backward() returned {len(grads)} gradients; after the input's, those of "
                f"shapes {', '.join(str(g.shape) for g in extra)} do not match the layer's "
                "floating arrays in order (" + ", ".join(f"{n} {sh}" for n, sh in candidates)
                + "); name them with params= and keep them as attributes",
                layer=self._gradcheck_name, target=self.display("x"))
        self.returned = tuple(names)
        return _returned_note(len(grads), names, by_name, said[len(self.targets):],
                              [n for n, _ in candidates] if ambiguous else None, state) \
            + _reordered(names, candidates)

    def _by_target(self, grads):
        if self.members:  # a list input's gradients, nested as its list or flat
            grads = [g for item in grads for g in (
                item if isinstance(item, (list, tuple)) else [item])]
        n_t = len(self.targets)
        if len(grads) == n_t:
            return dict(zip(self.targets, grads))
        if len(grads) == len(self.names):
            return {n: g for n, g in zip(self.names, grads) if n in self.targets}
        if len(grads) > n_t and not self.skipped:
            extra = len(grads) - n_t
            raise LayerProtocolError(
                f"backward() returned {len(grads)} gradients, but forward has {n_t} floating "
                f"input(s) ({', '.join(self.targets)}): {extra} too many",
                layer=self._gradcheck_name)
        raise LayerProtocolError(
            f"backward() returned {len(grads)} gradient(s), expected {n_t}: one per floating "
            f"input ({', '.join(self.targets)}), in order"
            + (f" (or {len(self.names)}, one per input)" if self.skipped else ""),
            layer=self._gradcheck_name)

    def find_labels(self, adapter, wrt=None):
        """Take as labels the inputs named so (``t``, ``y_true``: :data:`DATA_NAMES`, at any
        position) that ``backward`` returns no gradient for: ``backward(dout) -> dx``
        beside ``forward(x, t)`` with float (one-hot) labels, or beside Keras's
        ``forward(y_true, y_pred)`` (the labels first, the gradients those of the rest);
        and as not differentiated the inputs whose gradient backward returns as ``None``
        (autograd style: ``return grad_x, None`` for a float mask), unless ``wrt`` names
        them (:meth:`_drop_none_gradients`). One forward and one backward call on a
        snapshot, made only when such a name is a floating input or backward's source
        returns a ``None`` (counted in :attr:`step_calls`); a layer that raises is left to
        the check's own calls to report."""
        from gradcheck.protocol.state import StateSnapshot

        named = [n for n in self.targets if n in DATA_NAMES]
        nones = _returns_none(self.layer.backward_fn if isinstance(self.layer, FunctionPair)
                              else layer_method(self.layer, "backward"))
        if not (named or nones) or self.labels or len(self.targets) < 2:
            return
        snapshot, made = StateSnapshot(self), [0, 0]
        try:
            out = self.forward(self.x.copy(), adapter.train_flg)
            made[0] = 1
            grads = self._call_backward(self.split(np.ones(np.shape(out))))
            made[1] = 1
        except Exception:  # noqa: BLE001 -- the check's own calls report it
            return
        finally:
            snapshot.restore_all()
            self.step_calls = (self.step_calls[0] + made[0], self.step_calls[1] + made[1])
        if grads is None:
            grads = kept_input_gradient(self.layer)
        if nones and self._drop_none_gradients(grads, wrt):
            return
        count = len(grads) if isinstance(grads, (tuple, list)) else int(grads is not None)
        for missing in (self.targets[count:], self.targets[:len(self.targets) - count]):
            if count and missing and all(n in named for n in missing):
                self._drop_labels(missing)
                return

    def _drop_none_gradients(self, grads, wrt):
        """Take as not differentiated the inputs whose gradient ``grads`` (one backward's,
        one per target in order) holds as ``None``, passed through untouched and listed as
        not checked (:data:`_NONE_GRADIENT`); an input ``wrt`` names is an error naming it.
        Whether any was taken."""
        if not isinstance(grads, (tuple, list)) or len(grads) != len(self.targets):
            return False
        nones = [n for n, g in zip(self.targets, grads) if g is None]
        if not nones or len(nones) == len(self.targets):
            return False
        named = [n for n in nones if wrt is not None and n in wrt]
        if named:
            raise LayerProtocolError(
                f"backward() returns None for the gradient of {named[0]!r} (autograd style: "
                f"not differentiated), but wrt= names it: return its gradient, or leave it "
                f"out of wrt", layer=self._gradcheck_name, target=named[0])
        # a None for a floating input is "not differentiated" only for data by its name (a
        # mask, labels) or an input wrt= leaves out: a forgotten gradient (`return dx, dw,
        # None` beside a bias) is never taken for one
        unsaid = [n for n in nones if n not in DATA_NAMES and wrt is None]
        if unsaid:
            raise LayerProtocolError(
                f"backward() returns None for the gradient of the floating input "
                f"{unsaid[0]!r}: return its gradient, or, if it is not differentiated (a "
                f"constant, a mask), leave it out of wrt (wrt=[...] naming the others)",
                layer=self._gradcheck_name, target=unsaid[0])
        self._drop_labels(nones, _NONE_GRADIENT)
        return True

    def _drop_labels(self, labels, why=_LABELS_BY_NAME):
        """Take the targets ``labels`` as labels, passed through untouched; when the first
        target is one (Keras's ``forward(y_true, y_pred)``), the next is the engine's ``x``."""
        first = self.targets[0]
        for n in labels:
            self.targets.remove(n)
            self.passthrough[n] = self.x if n == first else self.inputs.pop(n)
            self.input_grads.pop(n, None)
            self.skipped.append((n, why))
        if first in labels:
            self.x = self.inputs.pop(self.targets[0])
            self.input_grads.pop(self.targets[0], None)


class FunctionPair:
    """CS231n-style functions as one layer.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs) -> (out, cache)``, ``-> (out1, out2, ..., cache)`` (several
        outputs, the cache last), or ``-> out`` (no cache).
    backward : callable or None
        ``backward(dout, cache) -> grad`` (``backward(dout1, dout2, ..., cache)``
        for several outputs) or a tuple of gradients, one per floating input;
        ``None``: ``forward`` returns ``(value, grads)`` itself (a loss such as ``softmax_loss(x, y) -> (loss, dx)``), the gradients of
        ``value`` (a scalar), scaled by ``dout``.
    """

    def __init__(self, forward, backward):
        self.forward_fn, self.backward_fn = forward, backward
        self.cache = None
        #: forward's inputs that backward takes again by name (deeplearning.ai's
        #: ``linear_activation_backward(dA, cache, activation)``), and their last values
        self.by_name, self.named = _taken_by_name(forward, backward), {}
        #: a model's ``loss(X, y) -> (loss, grads)`` over ``model.params`` (CS231n's Solver
        #: API): the model, its parameters the targets, its inputs not differentiated
        self.model = _model_of(forward) if backward is None else None
        self.param_grads = {}
        #: ``forward(ctx, ...)``, ``backward(ctx, dout)`` (torch.autograd.Function style):
        #: each forward gets a fresh context (a copy of :attr:`ctx_given`, the one the user
        #: passed, else a :class:`Context`), kept as the cache and passed first to backward
        self.takes_ctx, self.ctx_given = takes_ctx(forward, backward), None

    def _named_apart(self, given):
        """:attr:`named` without the parameters the ``given`` positional arguments (the
        upstream gradients and the cache) fill: hipsternet's ``bn_backward(dout, cache)``
        beside ``bn_forward(X, gamma, beta, cache)`` takes forward's returned cache
        there, not forward's input of that name."""
        if not self.named:
            return self.named
        filled = {p.name for p in positional_parameters(self.backward_fn)[:given]}
        return {k: v for k, v in self.named.items() if k not in filled}

    def model_params(self):
        """``{param: gradient}`` paths of a model's ``params`` (empty for functions)."""
        if self.model is None:
            return {}
        return {f"model.params[{k!r}]": f"param_grads[{k!r}]" for k in self.model.params}

    def forward(self, *inputs, **switch):
        """``forward_fn(*inputs)`` (``switch``: its train/eval parameter, by name), split
        into the output(s) and the cache."""
        if self.by_name:
            names, _ = forward_names(self.forward_fn, len(inputs))
            self.named = {n: v for n, v in zip(names, inputs) if n in self.by_name}
        if self.takes_ctx:
            self.cache = Context() if self.ctx_given is None else copy.copy(self.ctx_given)
            return self.forward_fn(self.cache, *inputs, **switch)
        result = self.forward_fn(*inputs, **switch)
        if self.backward_fn is None:
            if not (isinstance(result, tuple) and len(result) == 2):
                got = (f"{len(result)} values" if isinstance(result, tuple)
                       else type(result).__name__)
                raise LayerProtocolError(
                    f"forward returned {got}; without a backward function it must return "
                    "(value, grads): the value (a loss) and its gradients, one per floating "
                    "input (or a dict over model.params); parameters held as module globals "
                    "are not inputs: pass them as inputs to check them",
                    layer=getattr(self, "_gradcheck_name", None))
            value, self.cache = result
            if self.model is not None:
                if not isinstance(self.cache, dict):
                    raise LayerProtocolError(
                        f"loss() returned ({type(value).__name__}, "
                        f"{type(self.cache).__name__}); a model's loss(X, y) returns (loss, "
                        "grads), grads a dict with one gradient per key of model.params",
                        layer=getattr(self, "_gradcheck_name", None))
                missing = sorted(set(self.model.params) - set(self.cache))
                if missing:
                    raise LayerProtocolError(
                        f"loss() returned no gradient for {', '.join(missing)} (grads has "
                        f"{', '.join(sorted(self.cache)) or 'no keys'}); it must return one "
                        "per key of model.params", layer=getattr(self, "_gradcheck_name", None),
                        target=f"layer.model.params[{missing[0]!r}]")
            return value
        if isinstance(result, tuple) and len(result) >= 2:
            # (out, cache), or several outputs and the cache last (CS231n's
            # lstm_step_forward -> (next_h, next_c, cache)): backward(*douts, cache);
            # or the cache named among more values than backward takes (cache_layout)
            layout = cache_layout(self.forward_fn, self.backward_fn, len(result), self.by_name)
            if layout is None:
                *outs, self.cache = result
            else:
                at, n_out, _ = layout
                self.cache = result[at]
                outs = [v for i, v in enumerate(result) if i != at][:n_out]
            return outs[0] if len(outs) == 1 else tuple(outs)
        self.cache = None
        return result

    def backward(self, *douts, **given):
        """``backward_fn(*douts, cache)`` with the cache of the last :meth:`forward` (and
        ``given``, keyword arguments passed on: a learning rate), or forward's own
        gradients scaled by ``dout`` when there is no backward function."""
        if self.takes_ctx:
            return self.backward_fn(self.cache, *douts, **given)
        if self.backward_fn is not None:
            try:
                return self.backward_fn(*douts, self.cache,
                                        **self._named_apart(len(douts) + 1), **given)
            except (TypeError, ValueError) as exc:
                if self.cache is not None:
                    raise
                raise type(exc)(  # hipsternet's eval-mode bn_forward keeps no cache
                    f"{exc} (forward returned None as the cache backward takes: in this mode "
                    "it keeps nothing for backward, as an eval-mode forward may; "
                    "train_flg=True checks the pass that does)") from exc
        dout, = douts
        grads = self.cache
        scale = np.asarray(dout)
        if self.model is not None:  # the gradients of the loss over model.params, scaled
            self.param_grads = {k: scale * np.asarray(grads[k]) for k in self.model.params}
            return None
        if isinstance(grads, (tuple, list)):
            return tuple(scale * np.asarray(g) for g in grads)
        return scale * np.asarray(grads)


class Context:
    """The context a :class:`FunctionPair` of ``forward(ctx, ...)`` and ``backward(ctx,
    dout)`` (torch.autograd.Function style) gives each forward call and the backward that
    follows it: ``save_for_backward(*arrays)`` keeps them in ``saved_tensors``; any other
    attribute forward sets is kept as set."""

    saved_tensors = ()

    def save_for_backward(self, *tensors):
        """Keep ``tensors`` for backward, in :attr:`saved_tensors`."""
        self.saved_tensors = tensors


def takes_ctx(forward, backward):
    """Whether ``forward`` and ``backward`` both take a context first, named ``ctx``
    (torch.autograd.Function's static methods, written with numpy).

    Parameters
    ----------
    forward, backward : callable or None

    Returns
    -------
    bool
    """
    if backward is None:
        return False
    firsts = [positional_parameters(f)[:1] for f in (forward, backward)]
    return all(first and first[0].name == "ctx" for first in firsts)


def ctx_inputs(pair, inputs):
    """The inputs of a :class:`FunctionPair` that takes a context first, without it: a
    context the user passed first (``check_function(F.forward, F.backward, Ctx(), x, w)``),
    when ``inputs`` fill every positional parameter of forward, is copied for each call
    (:attr:`FunctionPair.ctx_given`) instead of being an input.

    Parameters
    ----------
    pair : FunctionPair
    inputs : tuple

    Returns
    -------
    tuple
    """
    if not pair.takes_ctx or not inputs:
        return inputs
    if len(inputs) == len(positional_parameters(pair.forward_fn)) and not isinstance(
            inputs[0], np.ndarray):
        pair.ctx_given = inputs[0]
        return inputs[1:]
    return inputs


def cache_parameter(layer, backward_kwargs=()):
    """The name of the cache a layer's ``backward(dout, cache)`` takes from its
    ``forward(x) -> (out, cache)`` (a method pair, CS231n's functions as a class), or
    ``None``.

    It is backward's last required positional parameter, after at least one upstream
    gradient, not given in ``backward_kwargs``, and named as a cache: ``cache`` is in its
    name, or forward's ``return out, <name>`` names it; forward's source returns several
    values (else the check asks for it by ``backward_kwargs``). A :class:`FunctionPair` is none
    (it threads its cache itself).

    Parameters
    ----------
    layer : object
    backward_kwargs : dict or sequence of str
        What the user passes to every backward call by name.

    Returns
    -------
    str or None
    """
    if isinstance(layer, FunctionPair):
        return None
    forward, backward = layer_method(layer, "forward"), layer_method(layer, "backward")
    if forward is None or backward is None:
        return None
    slots = positional_parameters(backward, required=True)
    if len(slots) < 2 or slots[-1].name in backward_kwargs or not returns_several(forward):
        return None
    name = slots[-1].name
    said = returned_names(forward, 2)[-1]
    return name if "cache" in name.lower() or (said and said[1] == name) else None


def _method_pair(layer, backward_kwargs, name):
    """The layer's ``forward`` and ``backward`` (with ``backward_kwargs`` bound) as a
    :class:`FunctionPair` (for :class:`CallLayer`, named after the layer)."""
    backward = layer_method(layer, "backward")
    if backward_kwargs:
        backward = functools.partial(backward, **backward_kwargs)
    pair = FunctionPair(layer_method(layer, "forward"), backward)
    pair._gradcheck_name = name
    return pair


def cache_layout(forward, backward, n, by_name=()):
    """Where the cache is among ``n`` values ``forward`` returns, when not last.

    ``backward(dout, cache)`` takes the gradients of the first outputs and then the
    cache, one per required positional parameter (those not given by name). When
    ``forward`` returns more values than that (hipsternet's ``bn_forward -> (out, cache,
    running_mean, running_var)``), the cache is the value its ``return`` statement names
    as backward's cache parameter is named; the values after the outputs backward takes
    are extra (not differentiated).

    Returns
    -------
    (int, int, tuple of str) or None
        ``(index of the cache, outputs taken, the extra values' names)``; ``None``:
        the cache is last (the usual layout, or nothing names it). Read once per pair of
        functions and ``n`` (forward's source is parsed).
    """
    key = (_code_of(forward), _code_of(backward), n, tuple(by_name))
    try:
        return _LAYOUTS[key]
    except KeyError:
        pass
    except TypeError:  # unhashable callables: read every time
        return _cache_layout(forward, backward, n, by_name)
    if len(_LAYOUTS) >= 1024:
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout = _cache_layout(forward, backward, n, by_name)
    return layout


#: ``{(forward code, backward code, n, by_name): layout}`` of :func:`cache_layout`.
_LAYOUTS = {}


def extra_outputs(forward, backward):
    """The names :func:`cache_layout` found extra for this pair of functions (in any
    call so far; the pair's own attributes are restored after a check)."""
    codes = (_code_of(forward), _code_of(backward))
    return tuple(dict.fromkeys(n for key, layout in list(_LAYOUTS.items())
                               if key[:2] == codes and layout for n in layout[2]))


def _code_of(fn):
    """The code object of the function ``fn`` decorates or is (the key of a layout: a
    plain decorator's wrapper code is every decorated function's), else ``fn``."""
    return getattr(unwrapped(fn), "__code__", fn)


def _cache_layout(forward, backward, n, by_name):
    slots = [p.name for p in (positional_parameters(backward, required=True)
                              if backward is not None else ()) if p.name not in by_name]
    said = returned_names(forward, n)
    names = None if not any(said) else [p[1] if p else None for p in said]
    if len(slots) < 2 or n <= len(slots) or names is None or slots[-1] not in names:
        return None
    at = names.index(slots[-1])
    rest = [m or f"forward's returned value {i}" for i, m in enumerate(names) if i != at]
    return at, len(slots) - 1, tuple(rest[len(slots) - 1:])


def _taken_by_name(forward, backward):
    """The names of ``forward``'s parameters that ``backward`` also has, after its first
    (the upstream gradient): given to it again by keyword, as the code that calls the pair
    does (``linear_activation_backward(dA, cache, activation)`` beside
    ``linear_activation_forward(A_prev, W, b, activation)``)."""
    fsig, bsig = signature(forward), signature(backward) if backward is not None else None
    if fsig is None or bsig is None:
        return ()
    params = list(bsig.parameters.values())[1:]
    return tuple(p.name for p in params if p.name in fsig.parameters and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "cache")  # forward's, returned


def _model_of(fn):
    """The model whose bound ``loss`` method ``fn`` is, when the model holds its
    parameters in a ``params`` dict of floating arrays (CS231n's ``TwoLayerNet``,
    ``FullyConnectedNet``, ``ThreeLayerConvNet``); else ``None``."""
    owner = getattr(fn, "__self__", None)
    params = getattr(owner, "params", None)
    if isinstance(params, dict) and params and all(floating_array(v) for v in params.values()):
        return owner
    return None


def is_index_input(layer, x, train_flg=None):
    """Whether an integer ``x`` is an index (not cast to float, passed through untouched as
    an integer input in a tuple is): the layer is an embedding (its class name says so),
    ``forward``'s first parameter is named like indices (:data:`INDEX_NAMES`), or, given
    ``train_flg``, ``forward`` indexes with it: one call on ``x`` cast to float64 (on a
    snapshot) raises numpy's IndexError for float indices. Other integer inputs are cast."""
    if not (isinstance(x, np.ndarray) and x.dtype.kind in "iu"):
        return False
    names, _ = forward_names(layer_method(layer, "forward"), 1)
    if "embed" in type(layer).__name__.lower() or names[0] in INDEX_NAMES:
        return True
    return train_flg is not None and _indexes_with(layer, x, train_flg)


#: numpy's IndexError for an array of floats used as indices.
_FLOAT_INDEX = ("arrays used as indices must be of integer", "only integers, slices")


def _indexes_with(layer, x, train_flg):
    """Whether ``layer.forward`` raises numpy's IndexError for float indices on ``x`` cast
    to float64 (``self.E[x]``); the layer is put back as it was."""
    from gradcheck.protocol.adapter import LayerAdapter
    from gradcheck.protocol.state import StateSnapshot

    snapshot = StateSnapshot(layer)
    try:
        LayerAdapter(layer, train_flg).raw_forward(x.astype(np.float64))
    except IndexError as exc:
        return any(m in str(exc) for m in _FLOAT_INDEX)
    except Exception:  # noqa: BLE001 -- another error: the check's own calls report it
        return False
    finally:
        snapshot.restore_all()
    return False


def index_note(layer, x):
    """What was decided for an integer ``x`` taken as indices."""
    names, _ = forward_names(layer_method(layer, "forward"), 1)
    named = "embed" in type(layer).__name__.lower() or names[0] in INDEX_NAMES
    return (f"x has integer dtype {x.dtype} and {type(layer).__name__}.forward({names[0]}, ...) "
            + ("takes indices (an embedding)" if named else
               "indexes with it (cast to float64 it raised IndexError)")
            + ": not cast to float, not differentiated, as an integer input in a tuple is "
            "not; the parameters were checked")


def call_dout(call, adapter, xw, dout, dout_w, findings):
    """The packed upstream gradient of a :class:`CallLayer` check.

    One forward call (on a snapshot) tells the outputs: a tuple ``dout`` is packed
    (one array per output, :meth:`CallLayer.pack`); with no ``dout``, a scalar
    output (a loss) gets ``dout = 1`` from the check as any layer's does
    (:class:`gradcheck.protocol.problem.Problem`), the others a seeded standard
    normal. Outputs ``backward`` takes no upstream gradient for
    (:meth:`CallLayer.douts_taken`) are not part of the check: a note says so.

    Returns
    -------
    ndarray or None
    """
    from gradcheck.protocol.state import StateSnapshot
    from gradcheck.report import Finding

    snapshot = StateSnapshot(call)
    try:
        adapter.forward(xw.copy())  # tells the outputs (call.out_shapes)
        shapes, dropped, caches = call.out_shapes, call.dropped_outputs, call.cache_outputs
    finally:
        snapshot.restore_all()
    if isinstance(dout, dict) and call.out_keys:  # one per output, under its key
        dout = tuple(dout[k] for k in call.out_keys if k in dout)
    if caches:
        shown = ", ".join(f"output {i} (a {kind})" for i, kind in caches)
        findings.append(Finding("outputs-without-gradient", False, (
            f"forward returns {shown} beside its arrays: taken for a cache it returns "
            "(as (loss, cache)), not an output; the check is of the array outputs")))
    if isinstance(dout, (tuple, list)):
        if dropped and shapes is not None and len(dout) == len(shapes) + len(dropped):
            dout = tuple(dout)[:len(shapes)]  # backward takes no gradient for the others
        return call.pack(dout, shapes)
    if dropped and call.labels:
        findings.append(Finding("outputs-without-gradient", False, (
            f"forward returns a scalar loss and {len(dropped)} more output(s) "
            f"({', '.join(str(shape) for _, shape in dropped)}), backward takes the "
            f"prediction and the labels: the check is of the loss, and backward is given "
            "forward's output of the input's shape (its prediction) as training does")))
    elif dropped:
        rest = ", ".join(f"output {i} {shape}" for i, shape in dropped)
        findings.append(Finding("outputs-without-gradient", False, (
            f"forward returns {len(shapes) + len(dropped)} outputs, backward "
            f"takes {len(shapes)} upstream gradient{'s' if len(shapes) > 1 else ''}: the "
            f"check is of the first {'ones' if len(shapes) > 1 else 'one'}; {rest} not "
            "checked")))
    return dout_w


def _has_default(fn, name):
    """Whether ``fn``'s parameter ``name`` has a default (any value)."""
    sig = signature(fn)
    param = sig.parameters.get(name) if sig is not None else None
    return param is not None and param.default is not param.empty


def _default_of(fn, name):
    """The default value of ``fn``'s parameter ``name`` when it is a real number, else
    ``None``."""
    sig = signature(fn)  # the signature reader _defaulted_dout and forward_names use
    param = sig.parameters.get(name) if sig is not None else None
    default = param.default if param is not None else None
    if isinstance(default, (int, float, np.integer, np.floating)) and not isinstance(
            default, bool):
        return default
    return None
