"""What the gate checks: a user's ``MODULE:FACTORY`` targets or the built-in suite.

A *case* is one check: a label, a function building a fresh ``(layer, x)``
and a mode. Factories are resolved (imported) before any check runs, so a
missing module or factory is reported before work is done.
"""

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from gradcheck.protocol.discovery import method_name
from gradcheck.validate import did_you_mean


class UsageError(Exception):
    """A command-line or configuration problem: exit status 2.

    ``show_cause``: the user's own code raised (the factory, or importing the
    user's module), so its traceback is printed below the message.
    """

    def __init__(self, message, show_cause=False):
        super().__init__(message)
        self.show_cause = show_cause


class FactoryError(UsageError):
    """A target's factory raised, or returned what cannot be checked.

    Raised while a case is built (:attr:`Case.build`), not while the targets
    are resolved: the gate records it as that case's error, as it does a
    layer's, and checks the other targets.
    """


class Case(NamedTuple):
    """One check of a gate run."""

    label: str
    build: Callable  # () -> (layer, x)
    train_flg: bool
    options: dict = {}  # check_layer keywords this case needs (never mutated)


def load_factory(spec, search_path=()):
    """Resolve ``MODULE:FACTORY`` or ``path/to/file.py:FACTORY`` to a callable.

    ``search_path``: directories tried (after the current directory) to
    import ``MODULE``.
    """
    if ":" not in spec:
        raise UsageError(f"TARGET must be MODULE:FACTORY or path/to/file.py:FACTORY; got {spec!r}")
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise UsageError(f"TARGET must be MODULE:FACTORY or path/to/file.py:FACTORY; got {spec!r}")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _import_file(where)
    else:
        for d in (os.getcwd(), *map(str, search_path)):
            if d not in sys.path:
                sys.path.insert(0, d)
        try:
            module = importlib.import_module(where)
        except (Exception, SystemExit) as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == where
            raise UsageError(f"cannot import module {where!r}: {type(exc).__name__}: {exc}",
                             show_cause=not missing) from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise UsageError(f"{where} has no attribute {attr!r}")
    if not callable(factory):
        raise UsageError(f"{where}:{attr} is {type(factory).__name__}, not a callable factory")
    return factory


def _import_file(where):
    path = Path(where)
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    mod_name = f"_gradcheck_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise UsageError(f"{where}: importing it raised {type(exc).__name__}: {exc}",
                         show_cause=True) from exc
    finally:
        sys.path.pop(0)
    return module


def target_cases(target, modes, *, shape=None, seed=0, label=None, search_path=()):
    """``[Case]`` for a user's ``MODULE:FACTORY``, one per mode.

    The factory returns ``(layer, x)``, or a layer alone when ``shape`` is
    given (``x`` is then standard normal from ``seed``).
    """
    factory = load_factory(target, search_path)
    label = label or target

    def build():
        try:
            made = factory()
        except (Exception, SystemExit) as exc:  # sys.exit() in user code must not pass
            raise FactoryError(f"the factory raised {type(exc).__name__}: {exc}",
                               show_cause=True) from exc
        return layer_and_input(made, shape, seed)

    return [Case(label, build, m) for m in modes]


def layer_and_input(made, shape, seed):
    """``(layer, x)`` from what a factory returned: a pair (``x`` an array, a tuple or a
    dict of inputs), a function triple ``(forward, backward, inputs)`` (CS231n pairs,
    ``backward`` may be ``None``), or a layer and ``--shape``.

    Parameters
    ----------
    made : object
        What the factory returned.
    shape : tuple of int or None
        ``--shape``: the input shape for a factory that returns a layer alone.
    seed : int
        Seed of that input (standard normal).

    Returns
    -------
    tuple
        ``(layer, x)``.

    Raises
    ------
    FactoryError
        ``made`` is none of these, or ``shape`` does not fit it.
    """
    if isinstance(made, tuple) and len(made) == 3 and callable(made[0]) \
            and (made[1] is None or callable(made[1])) \
            and method_name(made[0], "forward") is None:
        from gradcheck.protocol.calling import FunctionPair

        if shape is not None:
            raise FactoryError("--shape applies to a factory that returns a layer alone; "
                               "this one returns (forward, backward, inputs)")
        forward, backward, inputs = made
        pair = FunctionPair(forward, backward)
        pair._gradcheck_name = getattr(forward, "__name__", "function")
        pair._gradcheck_signature = forward
        return pair, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if isinstance(made, tuple) and len(made) == 2:
        if shape is not None:
            raise FactoryError("--shape applies to a factory that returns a layer alone; "
                               "this one returns (layer, x) with its own input")
        return made
    if isinstance(made, tuple) or method_name(made, "forward") is None:
        what = f"a tuple of {len(made)}" if isinstance(made, tuple) else type(made).__name__
        raise FactoryError(f"the factory returned {what}; expected a layer (with "
                           "forward and backward), a (layer, x) pair or a (forward, backward, "
                           "inputs) triple")
    if shape is None:
        raise FactoryError("the factory returned a layer without an input; return "
                           "(layer, x), or give --shape N,D or --shape N,C,H,W")
    return made, np.random.default_rng(seed).standard_normal(shape)


def config_cases(config, modes, seed):
    """``[Case]`` for every target of a :class:`~gradcheck.gate.config.GateConfig`."""
    cases = []
    for target in config.targets:
        try:
            cases += target_cases(config.resolve(target), modes, seed=seed, label=target,
                                  search_path=(config.path.parent,))
        except UsageError as exc:
            raise UsageError(f"{config.where('targets')}: {exc}", exc.show_cause) from exc
    return cases


def is_builtin_name(target):
    """A TARGET without ``:`` that does not look like a path names a built-in case."""
    return ":" not in target and "/" not in target and "\\" not in target \
        and not target.endswith(".py")


def builtin_names():
    """The names of the built-in layer configurations, in suite order."""
    from gradcheck.gate.suite import SPECS

    return [s.name for s in SPECS]


def _unknown_builtin(name, modes=None):
    from gradcheck.gate.suite import UNAVAILABLE

    unavailable = dict(UNAVAILABLE)
    if name in unavailable:  # a built-in this installation cannot build
        return UsageError(f"built-in layer {name!r} is not available here: {unavailable[name]}")
    names = builtin_names()
    hint = did_you_mean(name, names, n=3, cutoff=0.5)
    mode = f" in {'train' if modes[0] else 'eval'} mode" if modes and len(modes) == 1 else ""
    if name in names:
        return UsageError(f"built-in layer {name!r} has no check{mode}")
    return UsageError(f"no built-in layer {name!r}{hint}; gradcheck --list lists them "
                      "(a factory is MODULE:FACTORY or path/to/file.py:FACTORY)")


def builtin_cases(modes, seed, names=None):
    """``[Case]`` of the built-in suite in ``modes``; only the configurations ``names``
    when given (an unknown name is a :class:`UsageError` suggesting the nearest)."""
    from gradcheck.gate.suite import builtin_cases as cases

    for name in names or ():
        if name not in builtin_names():
            raise _unknown_builtin(name)
    chosen = [Case(c.spec.name, c.build, c.train_flg, c.spec.options_for(c.train_flg))
              for c in cases(seed=seed)
              if c.train_flg in modes and (names is None or c.spec.name in names)]
    if names and not chosen:
        raise _unknown_builtin(names[0], modes)
    return chosen


#: A ``--shape`` given where it cannot apply.
SHAPE_NOT_APPLICABLE = ("--shape applies to a TARGET factory that returns a layer alone; "
                        "built-in cases and configured targets have their own inputs")


def command_line_cases(target, modes, *, shape=None, seed=0):
    """``[Case]`` for a TARGET given on the command line: a built-in case's name (all its
    shapes in ``modes``) or a ``MODULE:FACTORY`` (one case per mode)."""
    if is_builtin_name(target):
        if shape is not None:
            raise UsageError(SHAPE_NOT_APPLICABLE)
        return builtin_cases(modes, seed, names=[target])
    return target_cases(target, modes, shape=shape, seed=seed)


def builtin_listing():
    """``gradcheck --list``: one line per built-in configuration (name, shapes, modes, notes)."""
    from gradcheck.gate.suite import SPECS, UNAVAILABLE

    width = max(len(s.name) for s in SPECS)
    lines = []
    for s in SPECS:
        shapes = " ".join("x".join(map(str, shape)) for shape in s.shapes)
        modes = "/".join("train" if m else "eval" for m in s.modes)
        lines.append(f"{s.name:<{width}}  {modes:<10}  {shapes}" + (f"  ({s.notes})"
                                                                    if s.notes else ""))
    lines += [f"{name:<{width}}  not available: {reason}" for name, reason in UNAVAILABLE]
    return lines
