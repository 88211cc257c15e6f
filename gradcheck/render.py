"""The one results table: its columns, their order, and the text around it.

The ``gradcheck`` command, ``str(report)``, the pytest failure message and
the notebook view (:mod:`gradcheck.notebook`) all draw their tables from
:data:`COLUMNS`, so a column means the same thing, in the same place,
everywhere. Columns come in tiers:

- tier 0, always: (case,) target, shape, margin, verdict -- they fit 80
  columns, and ``margin`` is the one number that decides (<= 1 passes);
- tier 1, when the width allows: the error and the tolerance at the worst
  element (their ratio is the margin), ``atol`` and ``rtol``;
- tier 2, with ``verbose`` (``gradcheck -v``) and the width for it: worst
  index, both values, step, noise, resolution.

A verdict or a margin is never cut: when even tier 0 is too wide, only the
case column wraps.

This module imports rich lazily (``import gradcheck`` imports numpy only), with
Python's ``random`` state put back (:func:`_import_rich`).
"""

import io
import math
import random
import shutil
import textwrap
from dataclasses import dataclass
from typing import Callable

__all__ = ["Column", "COLUMNS", "report_verdict", "count_verdicts", "default_width",
           "columns_for", "results_table", "table_text", "report_text", "failure_text",
           "detail_lines", "checked_lines", "failure_headline", "wrap", "title", "num", "as_grid",
           "grid_index", "LEGEND",
           "VERDICT_STYLES"]

#: How each verdict is coloured (rich styles; the HTML view maps them to CSS).
VERDICT_STYLES = {"PASS": "green", "FAIL": "bold red", "INCONCLUSIVE": "yellow"}

#: What the margin column means; printed under every table.
LEGEND = ("margin = error / tolerance at the worst element, tolerance = atol + rtol |numerical| "
          "(+ the method's error estimate); <= 1 passes")


#: A FAIL whose errors stay below this fraction of the gradient's scale gets the hint that
#: backward may differentiate a slightly different function (an epsilon inside a log).
SMALL_MISMATCH = 1e-5

def num(value, fmt=".2g"):
    """``value`` formatted with ``fmt``; ``"n/a"`` for NaN or None (not measured)."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    return format(value, fmt)


def shape_text(shape):
    """``(10, 6)`` -> ``"10x6"``; a scalar is ``"()"``."""
    return "x".join(map(str, shape)) or "()"


def worst_error(r):
    """``|numerical - analytic|`` at the worst element."""
    return abs(float(r.worst_numerical) - float(r.worst_analytic))


def worst_tolerance(r):
    """The tolerance the worst element was judged against (``error / margin``).

    ``margin`` is ``error / tolerance`` at that element, so this is the
    tolerance exactly as the engine applied it (including its error-estimate
    allowance); with a zero error it is ``atol + rtol |numerical|``.
    """
    err, margin = worst_error(r), float(r.margin)
    if err > 0 and margin > 0 and math.isfinite(margin):
        return err / margin
    return float(r.atol) + float(r.rtol) * abs(float(r.worst_numerical))


def as_grid(a):
    """``a`` as a 2-D grid for a heat map, and what its columns are.

    A scalar is 1x1, a vector one row, a matrix itself; more dimensions keep
    axis 0 as rows and flatten the others into columns.
    """
    if a.ndim == 0:
        return a.reshape(1, 1), "()"
    if a.ndim == 1:
        return a.reshape(1, -1), "element"
    if a.ndim == 2:
        return a, "column"
    return a.reshape(a.shape[0], -1), "flattened " + "x".join(map(str, a.shape[1:]))


def grid_index(index, shape):
    """Where element ``index`` of an array of ``shape`` lands in :func:`as_grid`'s grid."""
    import numpy as np

    if len(shape) == 0:
        return (0, 0)
    if len(shape) == 1:
        return (0, index[0])
    return (index[0], int(np.ravel_multi_index(index[1:], shape[1:])))


def _sampled(r):
    """`` (on m of n elements)`` after a sampled target's resolution: it holds there only."""
    if getattr(r, "checked_fraction", 1.0) >= 1.0:
        return ""
    return f" (on {r.n_checked} of {math.prod(r.shape)} elements only)"


def _worst_index(r):
    worst = str(tuple(r.worst_index))
    if r.worst_output_index is not None:
        worst = f"out {tuple(r.worst_output_index)} in {worst}"
    return worst


@dataclass(frozen=True)
class Column:
    """One column of the results table.

    Attributes
    ----------
    key : str
        Stable identifier (also the CSS class in the notebook view).
    header : str
    tier : int
        0 always shown, 1 when it fits, 2 with ``verbose``.
    cell : callable
        ``cell(result) -> str`` for a :class:`~gradcheck.TargetResult`.
    justify : str
        ``"left"`` or ``"right"``.
    """

    key: str
    header: str
    tier: int
    cell: Callable
    justify: str = "right"


#: The columns in their order. The gate adds a first column, ``case``.
COLUMNS = (
    Column("target", "target", 0, lambda r: r.name, "left"),
    Column("shape", "shape", 0, lambda r: shape_text(r.shape)),
    Column("margin", "margin", 0, lambda r: num(r.margin)),
    Column("verdict", "verdict", 0, lambda r: r.verdict, "left"),
    Column("error", "error", 1, lambda r: num(worst_error(r))),
    Column("tolerance", "tolerance", 1, lambda r: num(worst_tolerance(r))),
    Column("atol", "atol", 1, lambda r: num(r.atol)),
    Column("rtol", "rtol", 1, lambda r: num(r.rtol)),
    Column("worst_index", "worst index", 2, _worst_index),
    Column("numerical", "numerical", 2, lambda r: num(r.worst_numerical, ".6g")),
    Column("analytic", "analytic", 2, lambda r: num(r.worst_analytic, ".6g")),
    Column("step", "step", 2, lambda r: num(r.step)),
    Column("noise", "noise", 2, lambda r: num(r.noise)),
    Column("resolution", "resolution", 2, lambda r: num(r.resolution)),
)

_CASE = Column("case", "case", 0, None, "left")
_MIN_CASE_WIDTH = 12


def report_verdict(report):
    """The verdict of a whole check: ``"FAIL"``, ``"INCONCLUSIVE"`` or ``"PASS"``.

    FAIL when a target fails or a finding is a failure; otherwise
    INCONCLUSIVE when a target is; otherwise PASS. (Whether the check counts
    as passed is ``report.passed``, which also weighs ``inconclusive="pass"``.)
    """
    verdicts = {r.verdict for r in report.results}
    if "FAIL" in verdicts or any(f.failure for f in report.findings) or (
            not report.passed and "INCONCLUSIVE" not in verdicts):
        return "FAIL"
    return "INCONCLUSIVE" if "INCONCLUSIVE" in verdicts else "PASS"


def count_verdicts(reports):
    """``{"PASS": n, "FAIL": n, "INCONCLUSIVE": n}`` over the checks ``reports``."""
    counts = dict.fromkeys(VERDICT_STYLES, 0)
    for report in reports:
        counts[report_verdict(report)] += 1
    return counts


def default_width():
    """The width to render for: ``COLUMNS`` when set, else the terminal's, else 100."""
    return shutil.get_terminal_size((100, 24)).columns


def _rows(entries):
    """``[(case or None, result)]`` for ``entries`` of ``(case, report)``."""
    return [(case, r) for case, report in entries for r in report.results]


def _width(values):
    return max(len(line) for v in values for line in str(v).splitlines() or [""])


def columns_for(entries, width, verbose=False, show_case=True):
    """The columns of :data:`COLUMNS` (and ``case``) that fit ``width``, in order.

    Tier 0 always; tier 1 and then (with ``verbose``) tier 2 columns are added
    in their order while the whole table fits.
    """
    rows = _rows(entries)
    need = {c.key: _width([c.header] + [c.cell(r) for _, r in rows]) for c in COLUMNS}
    cols = [c for c in COLUMNS if c.tier == 0]
    # a column takes its width plus one space each side plus one separator
    used = sum(need[c.key] + 3 for c in cols) - 1
    if show_case:
        case_width = _width(["case"] + [case for case, _ in rows])
        used += min(case_width, _MIN_CASE_WIDTH) + 3
        budget_case = case_width - min(case_width, _MIN_CASE_WIDTH)
    else:
        budget_case = 0
    for tier in (1, 2) if verbose else (1,):
        for c in COLUMNS:
            if c.tier == tier and used + budget_case + need[c.key] + 3 <= width:
                cols.append(c)
                used += need[c.key] + 3
    order = {c.key: i for i, c in enumerate(COLUMNS)}
    return sorted(cols, key=lambda c: order[c.key])


def results_table(entries, *, width, verbose=False, show_case=True, color=True):
    """A rich ``Table`` of every target of ``entries``, fitted to ``width``.

    Parameters
    ----------
    entries : list of (str, GradCheckReport)
        The case label of each check (ignored without ``show_case``) and its
        report.
    width : int
        Columns available.
    verbose : bool
        Add the tier-2 columns (worst index, values, step, noise, resolution)
        that fit.
    show_case : bool
        Start with a ``case`` column (the gate: several checks in one table).
    color : bool
        Colour the verdicts.
    """
    _import_rich()
    from rich.table import Table
    from rich.text import Text

    cols = columns_for(entries, width, verbose, show_case)
    table = Table(show_edge=False, header_style="bold" if color else "", box=_box(),
                  pad_edge=False, collapse_padding=False)
    if show_case:
        table.add_column(_CASE.header, justify="left", overflow="fold",
                         min_width=_MIN_CASE_WIDTH)
    for c in cols:
        table.add_column(c.header, justify=c.justify, no_wrap=True)
    for case, r in _rows(entries):
        style = VERDICT_STYLES.get(r.verdict, "") if color else ""
        cells = [Text(c.cell(r), style=style if c.key == "verdict" else "") for c in cols]
        table.add_row(*([Text(case)] if show_case else []), *cells)
    return table


def _import_rich():
    """Import the rich modules this one uses, leaving Python's ``random`` stream untouched.

    ``rich.style`` draws ``random.getrandbits(24)`` from the global generator
    when imported: the first ``print(report)`` would move the caller's stream.
    """
    state = random.getstate()
    try:
        import rich.box  # noqa: F401
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401
        import rich.text  # noqa: F401
    finally:
        random.setstate(state)


def _box():
    from rich import box

    return box.SIMPLE_HEAD


def table_text(table, width):
    """``table`` as plain text, ``width`` columns wide at most."""
    _import_rich()
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False,
                      no_color=True, highlight=False, emoji=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def title(report):
    """``"BrokenSwish (10, 6) float64 train: FAIL"``."""
    return (f"{report.layer} {tuple(report.input_shape)} {report.dtype_label} {report.mode}: "
            f"{report_verdict(report)}")


def detail_lines(report, *, only_failing=False):
    """The lines under a report's table: settings, per-target details, findings, hint.

    Per target: the worst element, both values, error against tolerance,
    step, noise, resolution, and where the tolerance comes from.
    ``only_failing``: the targets that are not PASS only.
    """
    lines = [f"method={report.method} strategy={report.strategy} seed={report.seed} "
             f"forward calls={report.forward_calls} backward calls={report.backward_calls}"
             + _discovery(report)]
    lines += checked_lines(report)
    for r in report.results:
        if only_failing and r.verdict == "PASS":
            continue
        lines.append(
            f"  {r.name}: {r.verdict}, worst {_worst_index(r)}: numerical "
            f"{num(r.worst_numerical, '.10g')}, analytic {num(r.worst_analytic, '.10g')}; "
            f"error {num(worst_error(r), '.3g')} vs tolerance {num(worst_tolerance(r), '.3g')} "
            f"(margin {num(r.margin, '.3g')}); step {num(r.step, '.3g')}, noise "
            f"{num(r.noise)}, resolution {num(r.resolution)}" + _sampled(r))
        if r.inconclusive:
            lines.append(f"  {r.name}: inconclusive: {r.inconclusive}")
        lines.append(f"  {r.name}: {r.tolerance_reason}")
        for index, n, a in r.located:
            lines.append(f"  {r.name}: wrong element {index}: numerical {n:.10g}, "
                         f"analytic {a:.10g}")
    for f in report.findings:
        lines.append(f"{'FAILURE' if f.failure else 'warning'}: {f.message}")
    verdict = report_verdict(report)
    failed = [r for r in report.results if r.verdict == "FAIL"]
    small = max((r.max_rel_error for r in failed), default=None)
    factors = [line for r in failed for line in [_factor_hint(r, report.input_shape)] if line]
    if verdict == "FAIL" and small is not None and small < SMALL_MISMATCH:
        lines.append(
            f"hint: the mismatch is small (at most {small:.1g} of the gradient's scale): "
            "backward may be the exact gradient of a slightly different function than forward "
            "computes -- an epsilon inside a log (np.log(y + 1e-7)), a clip, a smoothing "
            "term; if that difference is intended, rtol= above it accepts it; otherwise the "
            "worst index and both values point at the wrong term")
    elif verdict == "FAIL" and factors:
        lines.extend(factors)
    elif verdict == "FAIL" and not failed:  # a finding failed the check, not a gradient
        lines.append("hint: the FAILURE lines above say what failed; the rows are the "
                     "gradient check's own, at the check's state, and passed")
    elif verdict == "FAIL":
        lines.append("hint: the worst index and both values point at the wrong term; "
                     "rerun with method='richardson' to rule out numerical error, or "
                     "strategy='jacobian' (small layers) to see which output it affects")
    elif verdict == "INCONCLUSIVE":
        lines.extend(_inconclusive_hints(report))
    return lines


#: Factors :func:`_factor_hint` names, beside the batch size and its inverse.
_FACTORS = {-1.0: "-1: the sign flipped", 2.0: "2: counted twice", 0.5: "1/2: halved"}


def constant_factor(result):
    """``c`` when a failing target's analytic gradient is ``c`` times its numerical one at
    every checked element (within each element's tolerance scaled by ``|c|``), else None.

    ``c`` is read from the elements whose numerical value is above ten tolerances (at
    least two) and must then hold at every checked element; a Jacobian (entries, not a
    gradient) or a vanished gradient gives None.

    Parameters
    ----------
    result : gradcheck.report.TargetResult

    Returns
    -------
    float or None
    """
    import numpy as np

    if result.strategy == "jacobian" or result.tolerances is None:
        return None
    num = np.asarray(result.numerical, dtype=np.float64).reshape(-1)
    ana = np.asarray(result.analytic, dtype=np.float64).reshape(-1)
    tol = np.asarray(result.tolerances, dtype=np.float64).reshape(-1)
    checked = np.isfinite(num) & np.isfinite(ana) & np.isfinite(tol)
    use = checked & (np.abs(num) > 10 * tol)
    if use.sum() < 2:
        return None
    c = float(np.median(ana[use] / num[use]))
    if c == 0 or abs(c - 1) < 1e-3:
        return None
    # every checked element, the small ones too (a dead unit's 0 against a nonzero analytic
    # value is another error beside the factor)
    err = np.abs(ana[checked] - c * num[checked])
    return c if bool(np.all(err <= max(1.0, abs(c)) * tol[checked])) else None


def _factor_hint(result, input_shape):
    """The hint for a target whose analytic gradient is a constant multiple of the true
    one (:func:`constant_factor`), naming the factor when it is a known one: the batch
    size ``N`` or ``1/N`` (a mean in backward where forward sums, or the reverse), ``-1``,
    ``2``, ``1/2``; ``""`` otherwise."""
    c = constant_factor(result)
    if c is None:
        return ""
    n = int(input_shape[0]) if input_shape else 0
    names = {}
    if n >= 2:
        names[1.0 / n] = (f"1/N, N = {n} the batch size: backward divides by the batch "
                          "size (a mean) where forward sums")
        names[float(n)] = (f"N = {n} the batch size: forward takes a mean over the batch "
                           "and backward leaves out its 1/N")
    for k, text in _FACTORS.items():
        names[k] = f"{names[k]}; or {text.split(': ', 1)[1]}" if k in names else text
    named = next((text for k, text in names.items() if abs(c / k - 1) < 1e-6), None)
    what = f"c = {named}" if named else f"c = {c:.6g}"
    return (f"hint: {result.name}'s analytic gradient is a constant {c:.6g} times the "
            f"numerical one at every checked element ({what}): the formula is right up to "
            "a scale factor; look for the factor, not for a wrong term")


def _inconclusive_hints(report):
    """The hint for an INCONCLUSIVE report: the sampled remedy for targets that are so only
    because ``strategy="sampled"`` left elements unchecked, another input or dout for the
    others (both when both kinds are present)."""
    from gradcheck.engine.verdict import sampled_only, sampled_remedy

    open_ = [r for r in report.results if r.verdict == "INCONCLUSIVE"]
    sampled = [r.name for r in open_ if sampled_only(r)]
    hints = []
    if sampled:
        hints.append(f"hint: only a sample of the elements of {', '.join(sampled)} was "
                     "checked (strategy='sampled'): "
                     + sampled_remedy(report.inconclusive == "pass"))
    if len(sampled) < len(open_) or not open_:
        hints.append("hint: the check could not have caught an error of practical size "
                     "here; change the input or dout (see the reason above)")
    return hints


def _discovery(report):
    f, b = getattr(report, "discovery_calls", (0, 0))
    return (f" (+{f} forward, {b} backward to discover the layer's calls and parameters)"
            if f or b else "")


def checked_lines(report):
    """What was checked: every target, then what was considered and not checked, with why."""
    lines = ["checked: " + ", ".join(r.name for r in report.results)]
    if report.not_checked:
        lines.append("not checked: " + "; ".join(f"{n}: {why}" for n, why in report.not_checked))
    return lines


def report_text(report, width=None, verbose=True):
    """``str(report)``: the title, the table (no case column), the details."""
    width = width or default_width()
    table = results_table([(None, report)], width=width, verbose=verbose, show_case=False,
                          color=False)
    return "\n".join([title(report), table_text(table, width),
                      *wrap([LEGEND, *detail_lines(report)], width)])


def wrap(lines, width):
    """``lines`` folded at ``width``; continuation lines indented under their start."""
    out = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False) or [""]
    return out


def failure_headline(report):
    """The first lines of a failure: what failed, where, both values."""
    lines = [f"gradient check failed: {report.layer} {tuple(report.input_shape)} "
             f"{report.dtype_label}, {report.mode} mode"]
    for r in report.results:
        if r.verdict != "PASS":
            lines.append(
                f"  target {r.name!r} at index {tuple(r.worst_index)}: numerical "
                f"{num(r.worst_numerical, '.10g')}, analytic {num(r.worst_analytic, '.10g')} "
                f"({r.verdict}: error {num(worst_error(r), '.3g')}, tolerance "
                f"{num(worst_tolerance(r), '.3g')}, margin {num(r.margin, '.3g')})")
    for f in report.findings:
        if f.failure:
            lines.append(f"  {f.kind}: {f.message}")
    return lines


def failure_text(report, run_options=None, width=None):
    """The message of a failed check (pytest, JUnit): headline, then ``str(report)``."""
    width = width or default_width()
    lines = wrap(failure_headline(report), width) + ["", report_text(report, width)]
    if run_options:
        lines.append("run-wide options from the command line: " + " ".join(
            f"--gradcheck-{k}={v}" for k, v in sorted(run_options.items())))
    return "\n".join(lines)
