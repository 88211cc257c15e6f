"""The ``gradcheck`` command: a CI gate for layer gradients.

``gradcheck [TARGET]`` (the ``check`` subcommand, the default) checks a
user's ``MODULE:FACTORY``, or one built-in case by name
(``gradcheck BatchNormalization-2d``; ``gradcheck --list`` lists them);
without TARGET, the targets configured in the nearest ``pyproject.toml``
``[tool.gradcheck]`` or ``setup.cfg`` ``[gradcheck]`` of the current directory
or a parent (:mod:`gradcheck.gate.config`), or, with no configuration, the
built-in suite. ``gradcheck plot TARGET`` draws the error of the numerical
gradient against the step (:mod:`gradcheck.gate.plot`).

Exit status: 0 when every check passes, 1 when any check fails or is
inconclusive, 2 for usage or input errors (a bad argument or configuration, a
factory that cannot be loaded or raises, a layer that breaks the protocol or
raises what gradcheck does not expect), 130 when interrupted (Ctrl-C).
"""

import argparse
import os
import sys
from pathlib import Path

from gradcheck.errors import GradCheckInputError, LayerCallError
from gradcheck.gate.config import ConfigError, find_config, read_config
from gradcheck.gate.options import GATE_OPTIONS, parse_shape, parse_step
from gradcheck.gate.run import Interrupted, run_checks, write_json, write_text
from gradcheck.gate.targets import (SHAPE_NOT_APPLICABLE, UsageError, builtin_cases,
                                    builtin_listing, command_line_cases, config_cases,
                                    is_builtin_name)
from gradcheck.gate.tracebacks import user_traceback
from gradcheck.validate import did_you_mean

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
#: Exit status on Ctrl-C (128 + SIGINT, as a shell reports a command it interrupted).
EXIT_INTERRUPTED = 130

#: Subcommands; any other first argument belongs to ``check``, the default.
SUBCOMMANDS = ("check", "plot")

#: Width of the output when stdout is not a terminal and ``COLUMNS`` is not set.
PIPE_WIDTH = 120

_EPILOG = ("gradcheck plot TARGET draws the error against the step size (gradcheck plot "
           "--help). exit status: 0 every check passes, 1 a check fails or is inconclusive, "
           "2 usage or input error, 130 interrupted")


def _add_check_arguments(p):
    p.add_argument("target", nargs="?", metavar="TARGET",
                   help="MODULE:FACTORY or path/to/file.py:FACTORY (FACTORY() returns "
                        "(layer, x), or a layer: then give --shape), or the name of a "
                        "built-in case (gradcheck --list)")
    p.add_argument("--list", action="store_true", help="list the built-in cases and exit")
    p.add_argument("--shape", type=parse_shape, help="input shape for a factory that returns a "
                   "layer alone, e.g. 8,16 or 4,3,5,5")
    p.add_argument("--config", metavar="FILE", help="read the targets from FILE (a .toml file "
                   "with [tool.gradcheck], or an INI file with [gradcheck]) instead of the "
                   "nearest pyproject.toml or setup.cfg")
    mode = p.add_argument_group("mode (default: train; built-in cases: both)")
    mode.add_argument("--train", action="store_true", help="check train mode (train_flg=True)")
    mode.add_argument("--eval", action="store_true",
                      help="check eval mode (train_flg=False); with --train, both")
    for opt in GATE_OPTIONS:
        p.add_argument(f"--{opt.flag}", dest=opt.name, type=opt.parse, metavar=opt.metavar,
                       help=opt.help)
    p.add_argument("--eps", type=parse_step, help="absolute step (default: from the dtype)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the reports as JSON to PATH "
                     "(schema: docs/report-format.md)")
    out.add_argument("--junit-xml", metavar="PATH", help="write a JUnit XML report to PATH "
                     "(one testcase per checked target)")
    out.add_argument("--format", choices=("text", "github"), default="text",
                     help="github: also print GitHub Actions annotations (::error file=...,"
                          "line=...::) at the failing layer's backward")
    out.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR=1)")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print the summary line only (no table, no progress display)")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="add the columns worst index, numerical, analytic, step, noise, "
                          "resolution (as the width allows) and every check's details")


def build_parser():
    """The ``gradcheck`` parser: subcommands ``check`` (the default) and ``plot``.

    ``parser.subcommands`` maps each subcommand's name to its parser.
    """
    from gradcheck.gate import plot

    parser = argparse.ArgumentParser(prog="gradcheck", description=__doc__.split("\n\n")[0],
                                     epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="{check,plot}")
    check = sub.add_parser(
        "check", prog="gradcheck", epilog=_EPILOG,
        help="check layers (the default: gradcheck ARGS is gradcheck check ARGS)",
        description="Check layers' analytic backward passes against finite differences. "
                    "With no TARGET: the targets configured in the nearest pyproject.toml "
                    "[tool.gradcheck] or setup.cfg [gradcheck] (this directory or a parent), "
                    "or else every built-in case in every mode.")
    _add_check_arguments(check)
    plot_parser = sub.add_parser("plot", prog="gradcheck plot", help=plot.DESCRIPTION,
                                 description=plot.DESCRIPTION)
    plot.add_arguments(plot_parser)
    parser.subcommands = {"check": check, "plot": plot_parser}
    return parser


def parse_args(argv, parser=None):
    """Parse ``argv`` (``check`` is implied unless a subcommand comes first).

    An unknown option is a usage error that names it and suggests the
    nearest known option (``--methd`` -> ``--method``).
    """
    parser = parser or build_parser()
    argv = list(argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        argv = ["check", *argv]
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = parser.subcommands[args.command]
        unknown = [a.split("=", 1)[0] for a in extra if a.startswith("-") and a != "-"]
        if unknown:
            known = [s for a in sub._actions for s in a.option_strings]
            sub.error(f"unrecognized option {unknown[0]}"
                      + did_you_mean(unknown[0], known, quote=str))
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _modes(args, default):
    if args.train and args.eval:
        return (True, False)
    if args.train or args.eval:
        return (True,) if args.train else (False,)
    return default


def plan(args):
    """``(cases, options, source, config)`` for the parsed command line.

    ``source`` says where the cases come from (for the JSON report);
    ``config`` is the configuration used, or ``None``.
    """
    if args.shape is not None and args.target is None:
        raise UsageError(SHAPE_NOT_APPLICABLE)
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
        builtin = is_builtin_name(args.target)
        cases = command_line_cases(args.target, _modes(args, (True, False) if builtin
                                                       else (True,)),
                                   shape=args.shape, seed=seed)
        source = ({"kind": "builtin", "file": None, "targets": [args.target]} if builtin
                  else {"kind": "target", "targets": [args.target]})
    elif config is not None and config.targets:
        cases = config_cases(config, _modes(args, config.modes or (True,)), seed)
        source = {"kind": "config", "file": str(config.path), "targets": list(config.targets)}
    else:
        default = config.modes if config is not None and config.modes else (True, False)
        cases = builtin_cases(_modes(args, default), seed)
        source = {"kind": "builtin", "file": str(config.path) if config else None}
    return cases, options, source, config


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


def output_width(stream):
    """``COLUMNS`` when set; the terminal's width (``None``: rich asks) on a terminal;
    else :data:`PIPE_WIDTH`."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if stream.isatty() else PIPE_WIDTH


def _report_error(errors, exc, case=None):
    where = f"{case}: " if case else ""
    errors.print(f"gradcheck: error: {where}{exc}", style="red", markup=False,
                 highlight=False)
    cause = exc.__cause__
    if cause is not None and (getattr(exc, "show_cause", False)
                              or isinstance(exc, LayerCallError)):
        errors.print(user_traceback(cause), markup=False, highlight=False)


def _consoles(args):
    from rich.console import Console

    def console(stream, stderr):
        return Console(stderr=stderr, highlight=False, width=output_width(stream),
                       no_color=True if args.no_color else None, soft_wrap=True)

    return console(sys.stdout, False), console(sys.stderr, True)


def _check_report_paths(args):
    """Refuse report paths that cannot be written, or one file for both reports."""
    for flag, path in (("--json", args.json), ("--junit-xml", args.junit_xml)):
        _check_writable(flag, path)
    if args.json and args.junit_xml and Path(args.json).resolve() == \
            Path(args.junit_xml).resolve():
        raise UsageError(f"--json and --junit-xml name the same file ({args.json}): one report "
                         "would overwrite the other; give each its own path")


def _print_source(out, args, config):
    if args.quiet:
        return
    if config is not None:
        out.print(f"gradcheck: configuration from {config.path}", markup=False)
    elif args.target is None:
        out.print("gradcheck: no gradcheck configuration here or above: the built-in suite",
                  markup=False)


def _print_notes(args, errors, outcomes, source):
    """The built-in cases this installation cannot check; ``--format github``'s annotations."""
    if source["kind"] == "builtin" and not source.get("targets"):
        from gradcheck.gate.suite import UNAVAILABLE
        for name, reason in UNAVAILABLE:
            errors.print(f"gradcheck: note: {name} not checked: {reason}", style="yellow",
                         markup=False)
    if args.format == "github":
        from gradcheck.gate.annotations import github_annotations
        for line in github_annotations(outcomes):
            print(line, flush=True)  # verbatim: never wrapped or styled


def _write_reports(args, outcomes, options, source, failed, interrupted=False):
    """Write ``--json`` and ``--junit-xml`` when given; returns the paths written."""
    written = []
    if args.json:
        write_json(args.json, outcomes, source, failed, interrupted)
        written.append(args.json)
    if args.junit_xml:
        from gradcheck.gate.junit import junit_xml
        props = dict(options, source=source["kind"])
        write_text("--junit-xml", args.junit_xml,
                   junit_xml(outcomes, properties=props, errors=failed))
        written.append(args.junit_xml)
    return written


def _interrupted(args, errors, exc, options, source, failed):
    """Ctrl-C during the checks: the reports of those finished, one line; exit 130."""
    written = _write_reports(args, exc.outcomes, options, source,
                             [*failed, (exc.label, exc)], interrupted=True)
    done = f"; the reports of what finished written to {' and '.join(written)}" if written else ""
    errors.print(f"gradcheck: {exc}{done}", style="red", markup=False, highlight=False)
    return EXIT_INTERRUPTED


def check(args):
    """The ``check`` subcommand.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (:func:`parse_args`).

    Returns
    -------
    int
        The exit status: :data:`EXIT_PASS`, :data:`EXIT_FAIL`, :data:`EXIT_ERROR`
        (also when a case could not run: the others are checked and reported
        first) or :data:`EXIT_INTERRUPTED` (Ctrl-C; the reports of the checks
        finished are written).
    """
    out, errors = _consoles(args)
    if args.list:
        for line in builtin_listing():
            out.print(line, markup=False)
        return EXIT_PASS
    failed = []  # (case, error): reported after the others ran
    try:
        _check_report_paths(args)
        cases, options, source, config = plan(args)
        _print_source(out, args, config)
        try:
            outcomes = run_checks(cases, options, console=out, progress_console=errors,
                                  quiet=args.quiet, verbose=args.verbose,
                                  on_error=lambda label, exc: failed.append((label, exc)))
        except Interrupted as exc:
            return _interrupted(args, errors, exc, options, source, failed)
        _print_notes(args, errors, outcomes, source)
        _write_reports(args, outcomes, options, source, failed)
    except (UsageError, ConfigError, GradCheckInputError) as exc:
        _report_error(errors, exc)
        return EXIT_ERROR
    for label, exc in failed:
        _report_error(errors, exc, label)
    if failed:
        return EXIT_ERROR
    return EXIT_FAIL if any(not o.report.passed for o in outcomes) else EXIT_PASS


def main(argv=None):
    """Entry point of the ``gradcheck`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status; :data:`EXIT_INTERRUPTED` (130) on Ctrl-C, with one
        line on stderr instead of a traceback.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "plot":
            from gradcheck.gate.plot import run

            return run(args)
        return check(args)
    except KeyboardInterrupt:
        print("gradcheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
