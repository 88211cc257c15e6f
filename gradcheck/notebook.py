"""The notebook view of a report: ``GradCheckReport._repr_html_``.

Jupyter shows a report as the results table of :mod:`gradcheck.render`
(every column, verdicts coloured), the legend, the details and, for every
target that is not PASS, a small heat map of ``|numerical - analytic|`` over
its elements: an inline PNG when matplotlib is installed, an HTML table of
coloured cells otherwise. Styles are inline attributes, so the colours
survive front ends that strip ``<style>`` blocks.
"""

import base64
import html
import io

import numpy as np

from gradcheck.render import (COLUMNS, LEGEND, as_grid, detail_lines, grid_index,
                              report_verdict, shape_text, title)

__all__ = ["report_html", "heatmap_html"]

_COLORS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "INCONCLUSIVE": "#9a6700"}
_BACKGROUNDS = {"PASS": "", "FAIL": "#ffebe9", "INCONCLUSIVE": "#fff8c5"}
_CELL = "padding:2px 8px;border-bottom:1px solid #d0d7de;"
#: The HTML heat map shows at most this many rows and columns, around the worst element.
MAX_CELLS = 16


def _error_grid(r):
    """``|numerical - analytic|`` as a grid, and the grid cell of the worst element."""
    err = np.abs(np.asarray(r.numerical, dtype=float) - np.asarray(r.analytic, dtype=float))
    grid, columns = as_grid(err)
    if err.shape == tuple(r.shape) and len(r.worst_index) == err.ndim:
        worst = grid_index(tuple(r.worst_index), err.shape)
    else:  # a Jacobian block or projection scalars: mark the largest error
        finite = np.where(np.isfinite(grid), grid, -np.inf)
        worst = np.unravel_index(int(np.argmax(finite)), grid.shape)
    return grid, columns, tuple(int(i) for i in worst)


def _png(r, grid, columns, worst):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows, cols = grid.shape
    fig = Figure(figsize=(min(5.0, 1.9 + 0.25 * cols), min(3.0, 1.1 + 0.22 * rows)), dpi=80,
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="magma", aspect="auto",
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label="|numerical - analytic|")
    ax.add_patch(Rectangle((worst[1] - 0.5, worst[0] - 0.5), 1, 1, fill=False, ec="cyan",
                           lw=2))
    ax.set_xlabel(columns, fontsize=8)
    ax.tick_params(labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<img class="gc-heatmap" alt="|numerical - analytic| of {html.escape(r.name)}" '
            f'src="data:image/png;base64,{data}"/>')


def _window(n, center, size):
    start = min(max(0, center - size // 2), max(0, n - size))
    return range(start, min(n, start + size))


def _table(grid, worst):
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0
    rows, cols = _window(grid.shape[0], worst[0], MAX_CELLS), _window(grid.shape[1], worst[1],
                                                                     MAX_CELLS)
    out = ['<table class="gc-heatmap" style="border-collapse:collapse;font-size:10px">',
           "<tbody>"]
    for i in rows:
        out.append("<tr>")
        for j in cols:
            v = grid[i, j]
            alpha = 0.0 if not np.isfinite(v) or top <= 0 else float(v) / top
            border = "outline:2px solid #0969da;" if (i, j) == worst else ""
            out.append(f'<td title="[{i}, {j}] {v:.3g}" style="width:14px;height:14px;'
                       f'background:rgba(207,34,46,{alpha:.2f});{border}"></td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    shown = f"rows {rows.start}-{rows.stop - 1}, columns {cols.start}-{cols.stop - 1} of " \
            f"{grid.shape[0]}x{grid.shape[1]}" if len(rows) * len(cols) < grid.size else ""
    return "".join(out), shown


def heatmap_html(r):
    """A ``<figure>`` with the heat map of ``|numerical - analytic|`` of the target ``r``.

    An inline PNG when matplotlib can be imported, an HTML table of cells
    (red in proportion to the error, the worst element outlined) otherwise.
    """
    grid, columns, worst = _error_grid(r)
    try:
        body, shown = _png(r, grid, columns, worst), ""
    except ImportError:
        body, shown = _table(grid, worst)
    caption = (f"|numerical - analytic| of {r.name!r} ({shape_text(r.shape)}), worst element "
               f"{tuple(r.worst_index)} outlined" + (f"; {shown}" if shown else ""))
    return (f'<figure style="display:inline-block;margin:4px 12px 4px 0">{body}'
            f'<figcaption style="font-size:11px">{html.escape(caption)}</figcaption></figure>')


def _results_table(report):
    head = "".join(f'<th style="{_CELL}text-align:{c.justify}">{html.escape(c.header)}</th>'
                   for c in COLUMNS)
    rows = []
    for r in report.results:
        cells = []
        for c in COLUMNS:
            style = f"{_CELL}text-align:{c.justify};"
            if c.key == "verdict":
                style += f"color:{_COLORS.get(r.verdict, '')};font-weight:bold;"
            cells.append(f'<td class="gc-{c.key}" style="{style}">{html.escape(c.cell(r))}</td>')
        rows.append(f'<tr class="gc-{r.verdict.lower()}" style="background:'
                    f'{_BACKGROUNDS.get(r.verdict, "")}">{"".join(cells)}</tr>')
    return (f'<table class="gc-results" style="border-collapse:collapse;font-family:monospace">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def report_html(report):
    """The HTML of ``report`` for Jupyter (see the module docstring)."""
    heading, verdict = title(report), report_verdict(report)
    maps = "".join(heatmap_html(r) for r in report.results if r.verdict != "PASS")
    details = "\n".join(detail_lines(report))
    return (f'<div class="gradcheck-report">'
            f'<p style="font-weight:bold;color:{_COLORS.get(verdict, "")}">'
            f"{html.escape(heading)}</p>{_results_table(report)}"
            f'<p style="font-size:11px">{html.escape(LEGEND)}</p>'
            + (f"<div>{maps}</div>" if maps else "")
            + f'<pre style="font-size:11px;white-space:pre-wrap">{html.escape(details)}</pre>'
            "</div>")
