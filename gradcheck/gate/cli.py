"""The ``gradcheck`` command: a CI gate for layer gradients.

``gradcheck [TARGET]`` checks a user's ``MODULE:FACTORY``; without TARGET, the
targets configured in ``pyproject.toml`` ``[tool.gradcheck]`` or ``setup.cfg``
``[gradcheck]`` of the current directory (:mod:`gradcheck.gate.config`), or, with
no configuration, the built-in suite. ``gradcheck plot TARGET`` draws the
error of the numerical gradient against the step (:mod:`gradcheck.gate.plot`).

Exit status: 0 when every check passes, 1 when any check fails, 2 for usage
or input errors (a bad argument or configuration, a factory that cannot be
loaded, a layer that breaks the protocol).
"""

import argparse
import os
import sys
from pathlib import Path

from gradcheck.gate.run import run_checks, write_json, write_text
from gradcheck.gate.options import GATE_OPTIONS, parse_shape, parse_step
from gradcheck.gate.targets import UsageError, builtin_cases, config_cases, target_cases
from gradcheck.gate.config import ConfigError, find_config, read_config
from gradcheck.errors import GradCheckInputError, LayerCallError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

def build_parser():
    p = argparse.ArgumentParser(
        prog="gradcheck",
        description="Check layers' analytic backward passes against finite differences. "
                    "With no TARGET: the targets configured in pyproject.toml [tool.gradcheck] "
                    "or setup.cfg [gradcheck], or else every built-in layer in every mode.",
        epilog="gradcheck plot TARGET draws the error against the step size (gradcheck plot "
               "--help). exit status: 0 all checks pass, 1 a check fails, 2 usage or input error")
    p.add_argument("target", nargs="?", metavar="TARGET",
                   help="MODULE:FACTORY or path/to/file.py:FACTORY; FACTORY() returns "
                        "(layer, x) or a layer (then give --shape)")
    p.add_argument("--shape", type=parse_shape, help="input shape for a factory that returns a "
                   "layer alone, e.g. 8,16 or 4,3,5,5")
    p.add_argument("--config", metavar="FILE", help="read the targets from FILE (a .toml file "
                   "with [tool.gradcheck], or an INI file with [gradcheck]) instead of "
                   "./pyproject.toml or ./setup.cfg")
    mode = p.add_argument_group("mode (default: train; the built-in suite: both)")
    mode.add_argument("--train", action="store_true", help="check train mode (train_flg=True)")
    mode.add_argument("--eval", action="store_true",
                      help="check eval mode (train_flg=False); with --train, both")
    for opt in GATE_OPTIONS:
        p.add_argument(f"--{opt.name}", type=opt.parse, metavar=opt.metavar, help=opt.help)
    p.add_argument("--eps", type=parse_step, help="absolute step (default: from the dtype)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the reports as JSON to PATH "
                     "(schema: docs/report-format.md)")
    out.add_argument("--junit-xml", metavar="PATH", help="write a JUnit XML report to PATH "
                     "(one testcase per checked target)")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print the summary line only (no table, no progress display)")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="print the full report of every check")
    return p


def _modes(args, default):
    if args.train and args.eval:
        return (True, False)
    if args.train or args.eval:
        return (True,) if args.train else (False,)
    return default


def plan(args):
    """``(cases, options, source)`` for the parsed command line.

    ``source`` says where the cases come from (for the JSON report).
    """
    if args.shape is not None and args.target is None:
        raise UsageError("--shape applies to a TARGET factory; the built-in suite and "
                         "configured targets have their own inputs")
    if args.target and args.config:
        raise UsageError("give either a TARGET or --config, not both")
    config = None
    if args.target is None:
        config = read_config(args.config) if args.config else find_config(".")
    options = {"method": "central", "seed": 0}
    if config is not None:
        options.update(config.options)
    for opt in GATE_OPTIONS:
        if getattr(args, opt.name) is not None:
            options[opt.name] = getattr(args, opt.name)
    if args.eps is not None:
        options["eps"] = args.eps
    seed = options["seed"]
    if args.target:
        cases = target_cases(args.target, _modes(args, (True,)), shape=args.shape, seed=seed)
        source = {"kind": "target", "targets": [args.target]}
    elif config is not None and config.targets:
        cases = config_cases(config, _modes(args, config.modes or (True,)), seed)
        source = {"kind": "config", "file": str(config.path), "targets": list(config.targets)}
    else:
        default = config.modes if config is not None and config.modes else (True, False)
        cases = builtin_cases(_modes(args, default), seed)
        source = {"kind": "builtin", "file": str(config.path) if config else None}
    return cases, options, source


def _check_writable(flag, path):
    """Refuse an output path that cannot be written before any check runs."""
    if path is None:
        return
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: no such directory {str(parent)!r}")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{flag} {path}: not writable")


def main(argv=None):
    """Entry point of the ``gradcheck`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plot"]:
        from gradcheck.gate.plot import main as plot_main
        return plot_main(argv[1:])
    from rich.console import Console

    args = build_parser().parse_args(argv)
    # CI logs are not terminals: rich would wrap at 80 columns and cut cells
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    errors = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 150)
    try:
        for flag, path in (("--json", args.json), ("--junit-xml", args.junit_xml)):
            _check_writable(flag, path)
        cases, options, source = plan(args)
        if source.get("file") and not args.quiet:
            console.print(f"gradcheck: configuration from {source['file']}", highlight=False)
        reports = run_checks(cases, options, console=console, progress_console=errors,
                             quiet=args.quiet, verbose=args.verbose)
        if source["kind"] == "builtin":
            from gradcheck.gate.suite import UNAVAILABLE
            for name, reason in UNAVAILABLE:
                errors.print(f"gradcheck: note: {name} not checked: {reason}", style="yellow",
                             markup=False)
        if args.json:
            write_json(args.json, reports, source)
        if args.junit_xml:
            from gradcheck.gate.junit import junit_xml
            props = dict(options, source=source["kind"])
            write_text("--junit-xml", args.junit_xml,
                       junit_xml([(c.label, r, t) for c, r, t in reports], properties=props))
    except (UsageError, ConfigError, GradCheckInputError) as exc:
        errors.print(f"gradcheck: error: {exc}", style="red", markup=False)
        cause = exc.__cause__
        if cause is not None and (getattr(exc, "show_cause", False)
                                  or isinstance(exc, LayerCallError)):
            import traceback
            errors.print("".join(traceback.format_exception(cause)).rstrip(), markup=False)
        return EXIT_ERROR
    return EXIT_FAIL if any(not r.passed for _, r, _ in reports) else EXIT_PASS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
