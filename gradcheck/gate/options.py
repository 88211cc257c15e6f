"""Options shared by the ``gradcheck`` command, the pytest plugin and project configuration.

One definition per option: the parser that validates its value (used as
argparse's and pytest's ``type=``, and by the ``[gradcheck]`` configuration
reader) and its help text, so ``--method`` on the command line,
``--gradcheck-method`` under pytest and ``method = ...`` in ``setup.cfg``
accept exactly the same values with the same messages.
"""

import argparse
import math
import re
import numbers
from dataclasses import dataclass
from typing import Callable

from gradcheck.validate import METHODS, PRECISIONS, STRATEGIES

__all__ = ["Option", "GATE_OPTIONS", "parse_method", "parse_strategy", "parse_precision", "parse_count",
           "parse_fraction", "parse_inconclusive", "parse_names", "parse_params",
           "parse_gradient_method",
           "parse_seed", "parse_tolerance", "parse_step", "parse_shape"]

#: The exception every parser raises; argparse and pytest print it as a usage error.
OptionError = argparse.ArgumentTypeError


def _number(value, what):
    if isinstance(value, bool):
        raise OptionError(f"expected {what}, got {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise OptionError(f"expected {what}, got {value!r}") from None


def parse_method(value):
    """A finite-difference method name (``"central"``, ...)."""
    text = str(value).strip()
    if text not in METHODS:
        raise OptionError(f"expected one of {', '.join(METHODS)}; got {value!r}")
    return text


def parse_strategy(value):
    """A strategy name (``"elementwise"``, ``"projection"``, ...)."""
    text = str(value).strip()
    if text not in STRATEGIES:
        raise OptionError(f"expected one of {', '.join(STRATEGIES)}; got {value!r}")
    return text


def parse_precision(value):
    """A precision policy (``"auto"``, ``"float64"``, ``"native"``)."""
    text = str(value).strip()
    if text not in PRECISIONS:
        raise OptionError(f"expected one of {', '.join(PRECISIONS)}; got {value!r}")
    return text


def parse_seed(value):
    """An integer seed >= 0."""
    if isinstance(value, bool) or isinstance(value, float):
        raise OptionError(f"expected an integer >= 0, got {value!r}")
    try:
        seed = int(value) if isinstance(value, numbers.Integral) else int(str(value).strip())
    except ValueError:
        raise OptionError(f"expected an integer >= 0, got {value!r}") from None
    if seed < 0:
        raise OptionError(f"expected an integer >= 0, got {value!r}")
    return seed


def parse_count(value):
    """An integer >= 1 (``samples``)."""
    try:
        count = parse_seed(value)
    except OptionError:
        count = -1
    if count < 1:
        raise OptionError(f"expected an integer >= 1, got {value!r}")
    return count


def parse_tolerance(value):
    """A finite tolerance >= 0."""
    tol = _number(value, "a number >= 0")
    if not math.isfinite(tol) or tol < 0:
        raise OptionError(f"expected a finite number >= 0, got {value!r}")
    return tol


def parse_step(value):
    """A finite absolute step > 0."""
    step = _number(value, "a number > 0")
    if not math.isfinite(step) or step <= 0:
        raise OptionError(f"expected a finite number > 0, got {value!r}")
    return step


_SHAPE = re.compile(r"\d+(?:,\d+)*|\d+(?:x\d+)*")


def parse_shape(text):
    """An input shape: positive integers separated by commas or by ``x`` (``8,16``, ``4x3x5x5``).

    Anything else (``2,x``, ``2,,3``, ``2,3,``, ``2.5``, a mix of ``,`` and ``x``)
    is refused, never read as a shorter shape.
    """
    compact = str(text).replace(" ", "")
    if not _SHAPE.fullmatch(compact):
        raise OptionError(f"--shape must be positive integers separated by commas, like 8,16 "
                          f"or 2,3,4,4; got {text!r}")
    shape = tuple(int(s) for s in re.split("[,x]", compact))
    if any(n <= 0 for n in shape):
        raise OptionError(f"--shape needs positive sizes; got {text!r}")
    return shape


def parse_fraction(value):
    """A finite number > 0."""
    x = _number(value, "a number > 0")
    if not math.isfinite(x) or x <= 0:
        raise OptionError(f"expected a finite number > 0, got {value!r}")
    return x


def parse_inconclusive(value):
    """``"fail"`` or ``"pass"``."""
    text = str(value).strip()
    if text not in ("fail", "pass"):
        raise OptionError(f"expected fail or pass; got {value!r}")
    return text


def _split(value, sep):
    """``value`` split at ``sep`` outside brackets (a report's ``blocks[(0, 'a')].W`` holds a
    comma: :func:`gradcheck.protocol.paths.split_path`)."""
    from gradcheck.protocol.paths import split_path

    return split_path(str(value), sep)


def _is_name(name):
    """A target name as the report writes it: identifiers joined by dots, each optionally
    followed by ``[key]`` subscripts (anything inside the brackets)."""
    from gradcheck.protocol.paths import _bracket_end

    outside, i = [], 0
    while i < len(name):
        if name[i] == "[":
            i = _bracket_end(name, i) + 1
            outside.append(".")
        else:
            outside.append(name[i])
            i += 1
    return all(part.isidentifier() or part.isdigit() or part == ""
               for part in "".join(outside).split(".")) and "".join(outside).strip(".") != ""


def parse_names(value):
    """Target names: a list, or a string of comma-separated names (``b_0,b_3``)."""
    items = value if isinstance(value, (list, tuple)) else _split(value, ",")
    names = tuple(str(v).strip() for v in items if str(v).strip())
    if not names or not all(_is_name(n) for n in names):
        raise OptionError(f"expected target names separated by commas; got {value!r}")
    return names


def parse_params(value):
    """Parameter names and their gradients: a dict, or ``"NAME=GRAD,NAME=GRAD"``
    (``W=dW,gamma=gamma_grad``; dotted paths and ``params['W']`` allowed)."""
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = []
        for part in (value if isinstance(value, (list, tuple)) else _split(value, ",")):
            pair = _split(part, "=")
            name, eq, grad = pair[0], len(pair) == 2, pair[-1]
            if not eq:
                raise OptionError(f"expected NAME=GRAD pairs separated by commas (W=dW,b=db); "
                                  f"got {value!r}")
            items.append((name, grad))
    params = {}
    for name, grad in items:
        name, grad = str(name).strip(), str(grad).strip()
        if not name or not grad:
            raise OptionError(f"expected NAME=GRAD pairs separated by commas (W=dW,b=db); "
                              f"got {value!r}")
        params[name] = grad
    if not params:
        raise OptionError(f"expected NAME=GRAD pairs separated by commas (W=dW,b=db); "
                          f"got {value!r}")
    return params


def parse_gradient_method(value):
    """The name of the layer's method that computes its parameter gradients after backward
    (EpyNN's ``compute_gradients``): an identifier, without ``()``."""
    name = str(value).strip()
    if name.endswith("()"):
        name = name[:-2]
    if not name.isidentifier():
        raise OptionError(f"expected the name of a method of the layer (compute_gradients); "
                          f"got {value!r}")
    return name


@dataclass(frozen=True)
class Option:
    """One option of a check, as the CLI, the plugin and the config file spell it."""

    name: str
    parse: Callable
    metavar: str
    help: str

    @property
    def flag(self):
        """The command-line spelling: ``min-resolution`` for ``min_resolution``."""
        return self.name.replace("_", "-")


#: The options that ``check_layer`` takes and that a run can set for every check.
GATE_OPTIONS = (
    Option("method", parse_method, "{" + ",".join(METHODS) + "}",
           "finite-difference formula (default: central)"),
    Option("strategy", parse_strategy, "{" + ",".join(STRATEGIES) + "}",
           "what is compared: every element, the whole Jacobian, random projections or "
           "sampled elements (default: auto, grouped where a structure is found)"),
    Option("samples", parse_count, "N",
           "elements per target of --strategy sampled (default: 64; a target with more "
           "elements is INCONCLUSIVE: those left unchecked are not ruled out)"),
    Option("precision", parse_precision, "{" + ",".join(PRECISIONS) + "}",
           "float16/float32 layers: evaluate in float64 (auto, the default) or natively"),
    Option("seed", parse_seed, "N", "seed of dout and of the inputs (default: 0)"),
    Option("atol", parse_tolerance, "ATOL",
           "absolute tolerance (default: derived per element from the measured noise, the "
           "measured truncation and the target's scale)"),
    Option("rtol", parse_tolerance, "RTOL",
           "relative tolerance (default: from the measured truncation error)"),
    Option("min_resolution", parse_fraction, "FRACTION",
           "a target whose resolution is coarser than this fraction of its gradient's scale "
           "is INCONCLUSIVE (default: 1e-3)"),
    Option("inconclusive", parse_inconclusive, "{fail,pass}",
           "whether an INCONCLUSIVE target fails the check (default: fail)"),
    Option("params", parse_params, "NAME=GRAD[,...]",
           "the parameters and the attributes holding their gradients, for names the "
           "discovery does not know (W=dW,gamma=gamma_grad); default: discovered"),
    Option("gradient_method", parse_gradient_method, "NAME",
           "the layer's method that computes the parameter gradients after backward, called "
           "after every backward (EpyNN's compute_gradients); default: the one method whose "
           "name says so, none when there are several (then the parameters are not checked)"),
    Option("wrt", parse_names, "NAME[,NAME...]",
           "check only these targets (x, W, blocks.0.b, ...); default: every input and "
           "parameter"),
    Option("expect_zero", parse_names, "NAME[,NAME...]",
           "targets whose gradient is zero by the layer's structure (a bias before a "
           "train-mode batch normalisation): PASS when both gradients are zero"),
)
