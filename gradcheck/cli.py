"""The ``gradcheck`` command: a CI gate for layer gradients.

Exit status: 0 when every check passes, 1 when any check fails, 2 for usage
or input errors (a bad argument, a factory that cannot be loaded, a layer that
breaks the protocol).
"""

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from gradcheck._check import check_layer
from gradcheck._validate import METHODS
from gradcheck.errors import GradCheckInputError, LayerCallError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A command-line problem: exit status 2.

    ``show_cause``: the user's own code raised (the factory, or importing the
    user's module), so its traceback is printed below the message.
    """

    def __init__(self, message, show_cause=False):
        super().__init__(message)
        self.show_cause = show_cause


def _shape(text):
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape must be integers like 8,16 or 2,3,4,4; "
                                         f"got {text!r}") from None
    if not shape or any(n <= 0 for n in shape):
        raise argparse.ArgumentTypeError(f"--shape needs positive sizes; got {text!r}")
    return shape


def _nonneg_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def _pos_float(text):
    v = _nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return v


def build_parser():
    p = argparse.ArgumentParser(
        prog="gradcheck",
        description="Check layers' analytic backward passes against finite differences. "
                    "With no TARGET, checks every built-in layer in every mode.",
        epilog="exit status: 0 all checks pass, 1 a check fails, 2 usage or input error")
    p.add_argument("target", nargs="?", metavar="TARGET",
                   help="MODULE:FACTORY or path/to/file.py:FACTORY; FACTORY() returns "
                        "(layer, x) or a layer (then give --shape)")
    p.add_argument("--shape", type=_shape, help="input shape for a factory that returns a "
                   "layer alone, e.g. 8,16 or 4,3,5,5")
    mode = p.add_argument_group("mode (default: train)")
    mode.add_argument("--train", action="store_true", help="check train mode (train_flg=True)")
    mode.add_argument("--eval", action="store_true",
                      help="check eval mode (train_flg=False); with --train, both")
    p.add_argument("--method", choices=METHODS, default="central",
                   help="finite-difference formula (default: central)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and dout (default 0)")
    p.add_argument("--eps", type=_pos_float, help="absolute step (default: from the dtype)")
    p.add_argument("--atol", type=_nonneg_float, help="absolute tolerance (default: derived)")
    p.add_argument("--rtol", type=_nonneg_float, help="relative tolerance (default: derived)")
    p.add_argument("--json", metavar="PATH", help="write the reports as JSON to PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="print the summary line only")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the full report of every check")
    return p


def load_factory(spec):
    """Resolve ``MODULE:FACTORY`` or ``path/to/file.py:FACTORY`` to a callable."""
    if ":" not in spec:
        raise UsageError(f"TARGET must be MODULE:FACTORY or path/to/file.py:FACTORY; got {spec!r}")
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise UsageError(f"TARGET must be MODULE:FACTORY or path/to/file.py:FACTORY; got {spec!r}")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"{where}: no such file")
        mod_name = f"_gradcheck_user_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise UsageError(f"{where}: importing it raised {type(exc).__name__}: {exc}",
                             show_cause=True) from exc
        finally:
            sys.path.pop(0)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == where
            raise UsageError(f"cannot import module {where!r}: {type(exc).__name__}: {exc}",
                             show_cause=not missing) from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise UsageError(f"{where} has no attribute {attr!r}")
    if not callable(factory):
        raise UsageError(f"{where}:{attr} is {type(factory).__name__}, not a callable factory")
    return factory


def user_cases(args):
    """``[(label, layer_factory, train_flg)]`` for a user's ``MODULE:FACTORY``."""
    factory = load_factory(args.target)
    modes = _modes(args)

    def build():
        try:
            made = factory()
        except Exception as exc:
            raise UsageError(f"{args.target}: the factory raised {type(exc).__name__}: {exc}",
                             show_cause=True) from exc
        if isinstance(made, tuple) and len(made) == 2:
            layer, x = made
        else:
            layer = made
            if args.shape is None:
                raise UsageError(f"{args.target}: the factory returned a layer without an input; "
                                 "give --shape N,D or --shape N,C,H,W")
            x = np.random.default_rng(args.seed).standard_normal(args.shape)
        return layer, x

    return [(args.target, build, m) for m in modes]


def _modes(args):
    if args.train and args.eval:
        return [True, False]
    return [False] if args.eval else [True]


def builtin_suite(args):
    from layers.specs import builtin_cases

    cases = builtin_cases(seed=args.seed)
    if args.train != args.eval:
        cases = [c for c in cases if c.train_flg == args.train]
    return [(c.spec.name, c.build, c.train_flg) for c in cases]


def run_checks(cases, args, console):
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("layer", "input shape", "mode", "target", "max rel err", "max abs err",
                "atol", "rtol", "verdict"):
        table.add_column(col, no_wrap=True,
                         justify="left" if col in ("layer", "mode", "target", "verdict")
                         else "right")
    reports, failed, t0 = [], 0, time.perf_counter()
    for label, build, train_flg in cases:
        layer, x = build()
        report = check_layer(layer, x, train_flg=train_flg, method=args.method, seed=args.seed,
                             eps=args.eps, atol=args.atol, rtol=args.rtol)
        reports.append((label, report))
        failed += not report.passed
        for r in report.results:
            style = "" if r.passed else "bold red"
            table.add_row(label, "x".join(map(str, report.input_shape)), report.mode, r.name,
                          f"{r.max_rel_error:.2e}", f"{r.max_abs_error:.2e}", f"{r.atol:.1e}",
                          f"{r.rtol:.1e}", r.verdict + (" (marginal)" if r.marginal else ""),
                          style=style)
        for f in report.findings:
            table.add_row(label, "", report.mode, f.target or "",
                          "", "", "", "", ("FAIL: " if f.failure else "note: ") + f.kind,
                          style="bold red" if f.failure else "yellow")
        if args.verbose or not report.passed:
            table.add_section()
    elapsed = time.perf_counter() - t0
    if not args.quiet:
        console.print(table)
        for label, report in reports:
            if args.verbose or not report.passed:
                console.print(f"\n[bold]{label}[/bold]", highlight=False)
                console.print(str(report), highlight=False, markup=False)
    n = len(reports)
    summary = (f"gradcheck: {n - failed} of {n} checks passed, {failed} failed "
               f"({sum(len(r.results) for _, r in reports)} targets, {elapsed:.1f} s)")
    console.print(summary, style="bold red" if failed else "bold green", highlight=False)
    return reports, failed


def write_json(path, reports):
    doc = {"schema_version": 1, "passed": all(r.passed for _, r in reports),
           "checks": [dict(r.to_dict(), label=label) for label, r in reports]}
    try:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"--json {path}: {exc.strerror}") from exc


def main(argv=None):
    """Entry point of the ``gradcheck`` command; returns the exit status."""
    from rich.console import Console

    parser = build_parser()
    args = parser.parse_args(argv)
    # CI logs are not terminals: rich would wrap at 80 columns and cut cells
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    errors = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 150)
    try:
        if args.shape is not None and args.target is None:
            raise UsageError("--shape applies to a TARGET factory; the built-in suite has "
                             "its own shapes")
        cases = user_cases(args) if args.target else builtin_suite(args)
        reports, failed = run_checks(cases, args, console)
        if args.json:
            write_json(args.json, reports)
    except (UsageError, GradCheckInputError) as exc:
        errors.print(f"gradcheck: error: {exc}", style="red", markup=False)
        cause = exc.__cause__
        if cause is not None and (getattr(exc, "show_cause", False)
                                  or isinstance(exc, LayerCallError)):
            import traceback
            errors.print("".join(traceback.format_exception(cause)).rstrip(), markup=False)
        return EXIT_ERROR
    return EXIT_FAIL if failed else EXIT_PASS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
