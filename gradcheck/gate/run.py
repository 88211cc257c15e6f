"""Running the gate's checks: the progress display, the printed results, the JSON report."""

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
from rich.text import Text

from gradcheck.check import check_layer
from gradcheck.engine.parallel import on_progress
from gradcheck.engine.strategies import expected_calls
from gradcheck.errors import GradCheckInputError
from gradcheck.gate.annotations import source_of
from gradcheck.gate.targets import UsageError
from gradcheck.protocol.discovery import is_layer, method_name
from gradcheck.render import (LEGEND, count_verdicts, detail_lines, failure_headline,
                              report_verdict, results_table, wrap)

#: Version of the layout of the ``--json`` document (see docs/report-format.md).
JSON_SCHEMA_VERSION = 1



def _input_sizes(x):
    """Sizes of the floating inputs: ``x`` itself, or those of a tuple/dict of inputs."""
    from gradcheck.protocol.calling import is_several

    if not is_several(x):
        return [int(np.size(x))]
    values = list(x.values()) if isinstance(x, dict) else list(x)
    return [v.size for v in values if isinstance(v, np.ndarray) and v.dtype.kind == "f"] or [1]


def estimate_forward_calls(layer, x, method):
    """Forward calls a check will make, roughly: per element of ``x`` and of every parameter.

    Parameters are guessed before the check as the float ndarray attributes
    ``p`` of the layer (and of layers it holds) that have a ``d`` + ``p``
    attribute; the check itself discovers them exactly.
    """
    sizes, seen, counted, stack = _input_sizes(x), set(), set(), [layer]
    while stack:
        obj = stack.pop()
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict) or id(obj) in seen or len(seen) > 1000:
            continue
        seen.add(id(obj))
        for name, v in attrs.items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and "d" + name in attrs:
                if id(v) not in counted:  # a container may alias its children's arrays
                    counted.add(id(v))
                    sizes.append(v.size)
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
            elif is_layer(v):
                stack.append(v)
    return expected_calls(method, sizes)


class CheckProgress:
    """A rich progress display on stderr, shown once a run has lasted ``delay`` seconds.

    One line for the run (checks done / total) and one for the current check
    (forward calls done / an estimate of the total). Disabled (a no-op) when
    ``enabled`` is false: stderr is not a terminal, or ``--quiet``.
    """

    def __init__(self, console, n_checks, enabled, delay=1.0):
        self.console, self.n_checks, self.enabled, self.delay = console, n_checks, enabled, delay
        self._progress = None
        self._started = False
        self.last_calls = None  # forward calls counted during the last check
        self._t0 = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.fields[unit]} {task.completed:.0f}/{task.total:.0f}"),
                TimeElapsedColumn(), console=self.console, transient=True)
            self._run = self._progress.add_task("gradcheck", total=self.n_checks, unit="checks")
            self._check = self._progress.add_task("", total=1, unit="forward calls")
        return self

    def __exit__(self, *exc):
        if self._started:
            self._progress.stop()

    def _tick(self):
        if not self._started and time.perf_counter() - self._t0 >= self.delay:
            self._progress.start()
            self._started = True

    @contextmanager
    def check(self, label, layer, x, method):
        """Track one check of ``layer``: counts its forward calls while the block runs.

        The calls made in this process through a wrapper of ``layer.forward``;
        those of parallel workers (``n_jobs``/``executor=``) as their chunks
        complete, through :func:`gradcheck.engine.parallel.on_progress`.
        """
        if not self.enabled:
            yield
            return
        p, task = self._progress, self._check
        total = estimate_forward_calls(layer, x, method)
        p.reset(task, total=total, completed=0, description=label)
        self._tick()
        state = {"n": 0, "shown": time.perf_counter()}

        def count(calls):
            state["n"] += calls
            now = time.perf_counter()
            if now - state["shown"] > 0.05:
                state["shown"] = now
                n = state["n"]
                p.update(task, completed=n, total=max(total, n + 1))
                self._tick()

        name = method_name(layer, "forward") or "forward"
        forward = _CountingForward(getattr(layer, name, None), count)
        counted = _set_instance_attr(layer, name, forward) if forward.__wrapped__ else False
        try:
            with on_progress(count):  # the calls of parallel workers, as their chunks end
                yield
        finally:
            if counted:
                delattr(layer, name)
            self.last_calls = state["n"] if counted else None
            p.update(task, completed=state["n"], total=max(state["n"], 1))
            p.advance(self._run)
            self._tick()


class _CountingForward:
    """``layer.forward`` that reports each call to ``count(1)`` first.

    Pickles as the layer's own ``forward`` (a parallel worker's copy of the
    layer calls it uncounted; its calls come back through
    :func:`gradcheck.engine.parallel.on_progress`).
    """

    def __init__(self, original, count):
        self.__wrapped__ = original  # the check inspects forward's signature
        self._count = count

    def __call__(self, *args, **kwargs):
        self._count(1)
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self):
        f = self.__wrapped__
        if getattr(f, "__self__", None) is not None:  # a bound method: the copy's own
            return getattr, (f.__self__, f.__name__)
        return _same, (f,)


def _same(f):
    return f


def _set_instance_attr(obj, name, value):
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError):  # __slots__, a read-only proxy: no per-call counts
        return False
    return True


class Outcome(NamedTuple):
    """One check of a gate run: its label, report, wall time and the layer's source lines."""

    label: str
    report: object  # GradCheckReport
    seconds: float
    source: Optional[dict] = None  # {"forward": SourceLine | None, "backward": ...}

    @property
    def case(self):
        """The table's case column: ``"label mode"``."""
        return f"{self.label} {self.report.mode}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a gate run, with what the run had done before it.

    Parameters
    ----------
    outcomes : list of Outcome
        The checks that finished.
    n_errors : int
        The cases that finished with an error (they could not run).
    label : str
        The case being checked when the run was interrupted (``"label mode"``).
    total : int
        Every case of the run.
    """

    def __init__(self, outcomes, n_errors, label, total):
        self.outcomes, self.label, self.total = outcomes, label, total
        self.done = len(outcomes) + n_errors
        super().__init__(f"interrupted after {self.done} of {_plural(total, 'check')} "
                         f"(during {label})")


class UnexpectedError(Exception):
    """An exception of a type gradcheck does not expect, raised while checking a case.

    Either a layer gradcheck cannot handle yet or a bug in gradcheck: the case
    could not run (exit status 2). The original is ``__cause__``; its
    traceback, the user's frames only, is shown below the message.
    """

    show_cause = True

    def __init__(self, exc):
        super().__init__(f"unexpected {type(exc).__name__} while checking: {exc} (raised by the "
                         "layer's code where gradcheck did not expect it, or a gradcheck bug)")


def _check_case(case, options, progress, label):
    """Build ``case``'s layer and check it: ``(report, source)``."""
    layer, x = case.build()
    source = source_of(layer)
    with progress.check(label, layer, x, options.get("method", "central")):
        report = check_layer(layer, x, train_flg=case.train_flg, **{**case.options, **options})
    return report, source


def _could_not_run(exc):
    """What a case's exception is recorded as: itself when it says what is wrong with the
    layer, its factory or the input (``GradCheckInputError``, ``UsageError``), else an
    :class:`UnexpectedError` chained to it."""
    if isinstance(exc, (GradCheckInputError, UsageError)):
        return exc
    error = UnexpectedError(exc)
    error.__cause__ = exc
    return error


def run_checks(cases, options, *, console, progress_console, quiet=False, verbose=False,
               progress_delay=1.0, on_error=None):
    """Run every case; print the table (verdicts coloured) and the summary line.

    Parameters
    ----------
    cases : list of Case
    options : dict
        ``check_layer`` keywords for every case (over each case's own).
    console, progress_console : rich.console.Console
        Where the results go, and the progress display (shown on a terminal).
    quiet, verbose : bool
        The summary line only; every column and every check's details.
    progress_delay : float
        Seconds before the progress display appears.
    on_error : callable, optional
        ``on_error(label, exc)`` takes the error of a case that could not run
        and the other cases go on: a ``GradCheckInputError`` (a layer that
        breaks the protocol), a :class:`~gradcheck.gate.targets.FactoryError`
        (a factory that raises), or an :class:`UnexpectedError` wrapping any
        other exception. Without it the error propagates.

    Returns
    -------
    list of Outcome
        Every case's label, report, the seconds it took and its source lines.

    Raises
    ------
    Interrupted
        On Ctrl-C (``KeyboardInterrupt``), with the checks finished before it;
        nothing is printed.
    """
    outcomes, t0, errors = [], time.perf_counter(), 0
    enabled = not quiet and progress_console.is_terminal
    with CheckProgress(progress_console, len(cases), enabled, progress_delay) as progress:
        for case in cases:
            t_case = time.perf_counter()
            label = f"{case.label} {'train' if case.train_flg else 'eval'}"
            try:
                report, source = _check_case(case, options, progress, label)
            except KeyboardInterrupt as exc:
                raise Interrupted(outcomes, errors, label, len(cases)) from exc
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(label, _could_not_run(exc))
                errors += 1
                continue
            outcomes.append(Outcome(case.label, report, time.perf_counter() - t_case, source))
    print_outcomes(console, outcomes, quiet=quiet, verbose=verbose,
                   elapsed=time.perf_counter() - t0, errors=errors)
    return outcomes


def print_outcomes(console, outcomes, *, quiet=False, verbose=False, elapsed=0.0, errors=0):
    """The table, the notes, the details of what did not pass, and the summary line."""
    width = console.width
    if not quiet and outcomes:
        console.print(results_table([(o.case, o.report) for o in outcomes], width=width,
                                    verbose=verbose, color=not console.no_color))
        console.print("\n".join(wrap([LEGEND], width)), style="dim")
        for o in outcomes:
            detailed = verbose or report_verdict(o.report) != "PASS"
            if detailed:
                lines = failure_headline(o.report) if not o.report.passed else []
                lines += detail_lines(o.report, only_failing=not verbose)
                console.print(Text(f"\n{o.case}", style="bold"))
                console.print(Text("\n".join(wrap(lines, width))))
            else:
                for f in o.report.findings:
                    console.print(Text("\n".join(wrap([f"note: {o.case}: {f.message}"], width)),
                                       style="yellow"))
    for line in unchecked_warnings(outcomes):
        console.print(Text("\n".join(wrap([line], width)), style="bold yellow"))
    console.print(Text(summary_line(outcomes, elapsed, errors),
                       style="bold green" if not errors and all(o.report.passed
                                                                for o in outcomes)
                       else "bold red"))


def unchecked_warnings(outcomes):
    """One warning line per check whose layer holds floating arrays but no parameter was
    found, and per floating array with no gradient found beside found parameters: printed
    above the summary line, also with ``--quiet``."""
    return [f"gradcheck: warning: {o.case}: floating arrays held, no parameter found; only "
            "the inputs were checked (name them with --params NAME=GRAD or a params key)"
            for o in outcomes if any(f.kind == "no-parameters-found" for f in o.report.findings)
            ] + [f"gradcheck: warning: {o.case}: {f.target} is a floating array with no gradient "
                 f"found, not checked (name it with --params {f.target}=GRAD)"
                 for o in outcomes for f in o.report.findings if f.kind == "no-gradient-found"]


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary_line(outcomes, elapsed, errors=0):
    """``gradcheck: 65 checks (177 targets): 64 passed, 1 failed, 0 inconclusive (4.2 s)``
    (``, 1 could not run`` after the counts when a case raised)."""
    counts = count_verdicts(o.report for o in outcomes)
    targets = sum(len(o.report.results) for o in outcomes)
    broken = f", {errors} could not run (below)" if errors else ""
    return (f"gradcheck: {_plural(len(outcomes), 'check')} ({_plural(targets, 'target')}): "
            f"{counts['PASS']} passed, "
            f"{counts['FAIL']} failed, {counts['INCONCLUSIVE']} inconclusive{broken} "
            f"({elapsed:.1f} s)")


def json_document(outcomes, source, errors=(), interrupted=False):
    """The ``--json`` document (schema version :data:`JSON_SCHEMA_VERSION`).

    Parameters
    ----------
    outcomes : list of Outcome
    source : dict
        What was checked (``"kind"``, ``"file"``, ``"targets"``).
    errors : iterable of (str, Exception)
        ``(case, exception)`` of the cases that could not run (listed under
        ``"errors"``).
    interrupted : bool
        The run was interrupted (Ctrl-C): ``outcomes`` are the checks finished
        before it.

    Returns
    -------
    dict
    """
    from gradcheck import __version__

    counts = count_verdicts(o.report for o in outcomes)
    errors = [{"case": label, "error": type(exc).__name__, "message": str(exc)}
              for label, exc in errors]
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "gradcheck_version": __version__,
        "source": source,
        "passed": not errors and not interrupted and all(o.report.passed for o in outcomes),
        "interrupted": bool(interrupted),
        "summary": {"checks": len(outcomes), "passed": counts["PASS"],
                    "failed": counts["FAIL"], "inconclusive": counts["INCONCLUSIVE"],
                    "targets": sum(len(o.report.results) for o in outcomes)},
        "checks": [dict(o.report.to_dict(), label=o.label, seconds=round(o.seconds, 6))
                   for o in outcomes],
        "errors": errors,
    }


def write_text(option, path, text):
    """Write a report file; an unwritable path is a usage error naming the option."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from exc


def write_json(path, outcomes, source, errors=(), interrupted=False):
    """Write the ``--json`` document of ``outcomes`` (and ``errors``) to ``path``
    (:func:`json_document`)."""
    document = strict_json(json_document(outcomes, source, errors, interrupted))
    write_text("--json", path, json.dumps(document, indent=2, allow_nan=False) + "\n")


#: How a non-finite float is written in the ``--json`` document: strict JSON has no
#: ``Infinity``/``NaN`` literal (``JSON.parse`` rejects one), so they are strings, which
#: Python's ``float()`` reads back.
NON_FINITE = {np.inf: "Infinity", -np.inf: "-Infinity"}


def strict_json(value):
    """``value`` (dicts, lists, numbers, strings) with every non-finite float as the string
    ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (:data:`NON_FINITE`): a document any
    JSON parser reads (a degenerate check's ``relative_resolution`` is infinite)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return NON_FINITE.get(float(value), "NaN")
    return value
