"""Running the gate's checks: the results table, the progress display, the JSON report."""

import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gradcheck.check import check_layer
from gradcheck.gate.targets import UsageError

#: Version of the layout of the ``--json`` document (see docs/report-format.md).
JSON_SCHEMA_VERSION = 1

_CALLS_PER_ELEMENT = {"forward": 1, "central": 2, "central4": 4, "richardson": 6}


def estimate_forward_calls(layer, x, method):
    """Forward calls a check will make, roughly: per element of ``x`` and of every parameter.

    Parameters are guessed before the check as the float ndarray attributes
    ``p`` of the layer (and of layers it holds) that have a ``d`` + ``p``
    attribute; the check itself discovers them exactly.
    """
    size, seen, counted, stack = int(np.size(x)), set(), set(), [layer]
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
                    size += v.size
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
            elif hasattr(v, "forward") and hasattr(v, "backward"):
                stack.append(v)
    return _CALLS_PER_ELEMENT.get(method, 2) * size + 2


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
        """Track one check of ``layer``: counts its forward calls while the block runs."""
        if not self.enabled:
            yield
            return
        p, task = self._progress, self._check
        total = estimate_forward_calls(layer, x, method)
        p.reset(task, total=total, completed=0, description=label)
        self._tick()
        state = {"n": 0, "shown": time.perf_counter()}
        original = getattr(layer, "forward")

        def forward(*args, **kwargs):
            state["n"] += 1
            now = time.perf_counter()
            if now - state["shown"] > 0.05:
                state["shown"] = now
                n = state["n"]
                p.update(task, completed=n, total=max(total, n + 1))
                self._tick()
            return original(*args, **kwargs)

        forward.__wrapped__ = original  # the check inspects forward's signature
        counted = _set_instance_attr(layer, "forward", forward)
        try:
            yield
        finally:
            if counted:
                del layer.forward
            self.last_calls = state["n"] if counted else None
            p.update(task, completed=state["n"], total=max(state["n"], 1))
            p.advance(self._run)
            self._tick()


def _set_instance_attr(obj, name, value):
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError):  # __slots__, a read-only proxy: no per-call counts
        return False
    return True


def _new_table():
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("layer", "input shape", "mode", "target", "max rel err", "max abs err",
                "atol", "rtol", "verdict"):
        table.add_column(col, no_wrap=True,
                         justify="left" if col in ("layer", "mode", "target", "verdict")
                         else "right")
    return table


def _add_rows(table, label, report, verbose):
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
    if verbose or not report.passed:
        table.add_section()


def run_checks(cases, options, *, console, progress_console, quiet=False, verbose=False,
               progress_delay=1.0):
    """Run every case; print the table (failures in red) and a summary line.

    Returns
    -------
    list of (Case, GradCheckReport, float)
        Every case, its report and the seconds it took.
    """
    table, reports, t0 = _new_table(), [], time.perf_counter()
    enabled = not quiet and progress_console.is_terminal
    with CheckProgress(progress_console, len(cases), enabled, progress_delay) as progress:
        for case in cases:
            t_case = time.perf_counter()
            layer, x = case.build()
            mode = "train" if case.train_flg else "eval"
            with progress.check(f"{case.label} {mode}", layer, x,
                                options.get("method", "central")):
                report = check_layer(layer, x, train_flg=case.train_flg, **options)
            reports.append((case, report, time.perf_counter() - t_case))
            _add_rows(table, case.label, report, verbose)
    elapsed = time.perf_counter() - t0
    failed = sum(not r.passed for _, r, _ in reports)
    if not quiet:
        console.print(table)
        for case, report, _ in reports:
            if verbose or not report.passed:
                console.print(f"\n[bold]{case.label}[/bold]", highlight=False)
                console.print(str(report), highlight=False, markup=False)
    n = len(reports)
    summary = (f"gradcheck: {n - failed} of {n} checks passed, {failed} failed "
               f"({sum(len(r.results) for _, r, _ in reports)} targets, {elapsed:.1f} s)")
    console.print(summary, style="bold red" if failed else "bold green", highlight=False)
    return reports


def json_document(reports, source):
    """The ``--json`` document (schema version :data:`JSON_SCHEMA_VERSION`)."""
    from gradcheck import __version__

    failed = sum(not r.passed for _, r, _ in reports)
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "gradcheck_version": __version__,
        "source": source,
        "passed": failed == 0,
        "summary": {"checks": len(reports), "passed": len(reports) - failed, "failed": failed,
                    "targets": sum(len(r.results) for _, r, _ in reports)},
        "checks": [dict(r.to_dict(), label=case.label, seconds=round(t, 6))
                   for case, r, t in reports],
    }


def write_text(option, path, text):
    """Write a report file; an unwritable path is a usage error naming the option."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from exc


def write_json(path, reports, source):
    write_text("--json", path, json.dumps(json_document(reports, source), indent=2) + "\n")
