"""``gradcheck plot TARGET``: the error of the numerical gradient against the step size.

For steps ``h`` from 1e-12 to 1e-1 the check is run with ``eps=h`` and no
tolerance, and the target's ``max_rel_error`` is plotted against ``h`` on
log-log axes. For a correct backward the curve is a V: truncation error
(slope ``p`` for a method of order ``p``) on the right, rounding error
(slope -1) on the left, the default step near the bottom. A curve that
never comes down to the tolerance means the analytic gradient is wrong, not
the step. With ``--heatmap`` (and always when the default check of the
target fails) a second panel shows the error over the target's elements.

Needs matplotlib (``pip install matplotlib``).
"""

import sys
from dataclasses import dataclass

import numpy as np

from gradcheck.check import check_layer
from gradcheck.gate.options import parse_seed, parse_shape
from gradcheck.gate.targets import UsageError, command_line_cases
from gradcheck.render import as_grid, grid_index
from gradcheck.validate import METHODS
from gradcheck.errors import GradCheckInputError

__all__ = ["StepSweep", "step_sweep", "plot_sweep", "add_arguments", "run", "main"]

_COLORS = {"forward": "tab:orange", "central": "tab:blue", "central4": "tab:green",
           "richardson": "tab:purple"}


@dataclass(frozen=True)
class StepSweep:
    """The error of one target's numerical gradient over a range of steps.

    Attributes
    ----------
    label, target, mode : str
    steps : ndarray of shape (S,)
        The absolute steps ``h``.
    errors : dict of str to ndarray of shape (S,)
        Per method, ``max_rel_error`` at each step (NaN where the check
        could not run, e.g. ``x + h == x`` everywhere).
    default : dict of str to TargetResult
        Per method, the result of the check with the default step and
        tolerances.
    """

    label: str
    target: str
    mode: str
    steps: np.ndarray
    errors: dict
    default: dict


#: The tolerance of the sweep's checks: large enough that no element is refined.
RAW = 1e300


def step_sweep(layer, x, *, target="x", train_flg=True, methods=("central",), steps=None,
               seed=0, label=None):
    """Run the check of ``target`` once per step and method; see :class:`StepSweep`."""
    steps = np.logspace(-12, -1, 23) if steps is None else np.asarray(steps, dtype=float)
    errors, default = {}, {}
    for method in methods:
        base = check_layer(layer, x, train_flg=train_flg, wrt=[target], method=method,
                           seed=seed)
        default[method] = base.result(target)
        errs = []
        for h in steps:
            try:
                # a tolerance no element exceeds: nothing is refined, so every value is the
                # method's own at step h (the V), not a refinement's
                r = check_layer(layer, x, train_flg=train_flg, wrt=[target], method=method,
                                eps=float(h), atol=RAW, rtol=0.0, seed=seed,
                                inconclusive="pass").result(target)
            except GradCheckInputError:  # forward fails at this step (a log of x - h < 0, ...)
                errs.append(np.nan)
                continue
            errs.append(_max_rel_error(r))
        errors[method] = np.array(errs)
    return StepSweep(label=label or type(layer).__name__, target=target,
                     mode="train" if train_flg else "eval", steps=steps, errors=errors,
                     default=default)


def _annotate_arms(ax, sweep):
    """Name the two arms of the V, inside it: rounding error left, truncation error right."""
    errs = np.log10(next(iter(sweep.errors.values())))
    if not np.isfinite(errs).any():
        return
    i = int(np.nanargmin(errs))
    style = dict(fontsize=9, color="dimgray", va="center", textcoords="offset points")
    for arm, text, dx, ha in ((slice(0, i), "rounding error ~ eps / h", 10, "left"),
                              (slice(i + 1, None), "truncation error ~ h^p", -10, "right")):
        idx = np.arange(len(errs))[arm]
        idx = idx[np.isfinite(errs[idx])]
        if len(idx) < 3 or np.nanmax(errs[idx]) - errs[i] < 2:  # no arm to speak of
            continue
        level = errs[i] + 0.6 * (np.nanmax(errs[idx]) - errs[i])  # 40% down the arm
        j = idx[np.argmin(np.abs(errs[idx] - level))]
        ax.annotate(text, (sweep.steps[j], 10 ** errs[j]), xytext=(dx, 0), ha=ha, **style)


def _max_rel_error(r):
    """``max|numerical - analytic| / max|gradient|`` over every element.

    Computed from the gradients, not taken from ``r.max_rel_error``: with no
    tolerance the engine may exclude elements as non-differentiable points,
    and the sweep wants the plain finite-difference error of all of them.
    """
    num, ana = np.asarray(r.numerical, dtype=float), np.asarray(r.analytic, dtype=float)
    if not (np.isfinite(num).all() and np.isfinite(ana).all()):
        return np.nan
    scale = max(float(np.max(np.abs(num))), float(np.max(np.abs(ana))))
    diff = float(np.max(np.abs(num - ana)))
    return diff / scale if scale > 0 else diff


def _tolerance(r):
    """The tolerance of ``r`` on the scale of ``max_rel_error`` (at the largest element)."""
    scale = max(float(np.max(np.abs(r.numerical))), float(np.max(np.abs(r.analytic))))
    return (r.atol + r.rtol * scale) / scale if scale > 0 else r.atol


def plot_sweep(sweep, path, heatmap=None):
    """Write the figure of ``sweep`` to the PNG ``path``; return ``path``.

    ``heatmap``: draw the per-element panel (default: when a default check failed).
    """
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    first = next(iter(sweep.default.values()))
    heatmap = (not all(r.passed for r in sweep.default.values())) if heatmap is None else heatmap
    rows = 3 if len(sweep.default) == 1 else (3 * len(sweep.default) + 1) // 2
    fig = Figure(figsize=(12.5 if heatmap else 8.5, 4.8 + 0.2 * rows), dpi=110,
                 layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=(1.35, 1)) if heatmap else [fig.subplots()]
    ax = axes[0]
    floor = 1e-18
    for method, errs in sweep.errors.items():
        color = _COLORS.get(method, None)
        ax.loglog(sweep.steps, np.maximum(errs, floor), "o-", ms=4, lw=1.6, color=color,
                  label=f"{method}: error at step h")
        r = sweep.default[method]
        ax.axvline(r.step, color=color, ls=":", lw=1.3)
        ax.plot([r.step], [max(r.max_rel_error, floor)], "*", ms=15, color=color, mec="black",
                label=f"{method}: default step {r.step:.2g} (smallest) -> error "
                      f"{r.max_rel_error:.2g}, {r.verdict}")
    single = len(sweep.default) == 1
    for method, r in sweep.default.items():
        tol = _tolerance(r)
        ax.axhline(tol, color="tab:red" if single else _COLORS.get(method), ls="--", lw=1.3,
                   label=(f"tolerance (atol + rtol max|g|) / max|g| = {tol:.2g}" if single
                          else f"{method}: tolerance {tol:.2g}"))
    tol = min(_tolerance(r) for r in sweep.default.values())
    lowest = np.nanmin(np.concatenate(list(sweep.errors.values())))
    if np.isfinite(lowest) and lowest > tol:
        ax.text(0.5, 0.04, "the error never falls below the tolerance at any step:\n"
                "the analytic gradient is wrong (not the step)", transform=ax.transAxes,
                ha="center", va="bottom", color="tab:red", fontsize=10,
                bbox=dict(boxstyle="round", fc="white", ec="tab:red"))
    elif np.isfinite(lowest):
        _annotate_arms(ax, sweep)
    ax.set_xlabel("step h (absolute)")
    ax.set_ylabel("max |numerical - analytic| / max |gradient|")
    ax.set_title(f"{sweep.label} [{sweep.mode}], target {sweep.target!r}: error vs step",
                 fontsize=11)
    ax.grid(True, which="major", alpha=0.35)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: "tolerance" in labels[i])
    fig.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8.5,
               loc="outside lower center", ncols=1 if single else 2,
               frameon=False)
    ax.set_ylim(bottom=max(floor, 0.2 * min(lowest if np.isfinite(lowest) else tol, tol)))
    if heatmap:
        _heatmap(fig, axes[1], first, LogNorm)
    fig.savefig(path)
    return path


def _heatmap(fig, ax, r, LogNorm):
    scale = max(float(np.max(np.abs(r.numerical))), float(np.max(np.abs(r.analytic))), 1e-300)
    rel = np.abs(r.numerical - r.analytic) / scale
    grid, xlabel = as_grid(rel)
    positive = grid[grid > 0]
    lo = float(positive.min()) if positive.size else 1e-18
    im = ax.imshow(np.maximum(grid, lo), cmap="magma", aspect="auto", interpolation="nearest",
                   norm=LogNorm(vmin=lo, vmax=max(float(grid.max()), lo * 10)))
    fig.colorbar(im, ax=ax, label="|numerical - analytic| / max |gradient|")
    ax.add_patch(_box(grid_index(tuple(r.worst_index), rel.shape)))
    ax.set_title(f"{r.name!r} per element at the default step: worst {tuple(r.worst_index)}\n"
                 f"numerical {r.worst_numerical:.6g}, analytic {r.worst_analytic:.6g}",
                 fontsize=10)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    if rel.ndim > 1:
        ax.set_ylabel("row (axis 0)")
    else:
        ax.set_yticks([])


def _box(index):
    from matplotlib.patches import Rectangle

    return Rectangle((index[1] - 0.5, index[0] - 0.5), 1, 1, fill=False, ec="cyan", lw=2)


def _short(label):
    """``path/to/file.py:make`` -> ``file.py:make`` (for titles)."""
    where, sep, attr = label.rpartition(":")
    return f"{where.replace(chr(92), '/').rsplit('/', 1)[-1]}{sep}{attr}" if sep else label


DESCRIPTION = "plot the error of the numerical gradient against the step size (a PNG)"


def add_arguments(p):
    """The arguments of ``gradcheck plot`` (a subparser of the ``gradcheck`` command)."""
    p.add_argument("target", metavar="TARGET", help="MODULE:FACTORY, path/to/file.py:FACTORY, "
                   "or a built-in case (e.g. BatchNormalization-2d; gradcheck --list)")
    p.add_argument("--wrt", default="x", help="the gradient to plot: x (default) or a "
                   "parameter's name")
    p.add_argument("--eval", action="store_true", help="eval mode (default: train)")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="finite-difference formula; repeat to compare (default: central)")
    p.add_argument("--seed", type=parse_seed, default=0, help="seed of dout (default 0)")
    p.add_argument("--shape", type=parse_shape,
                   help="input shape for a factory that returns a layer alone, e.g. 8,16")
    p.add_argument("-o", "--output", default="gradcheck-steps.png", metavar="PNG",
                   help="the file written (default: gradcheck-steps.png)")
    p.add_argument("--heatmap", action="store_true", default=None,
                   help="add the per-element error (default: only when the check fails)")


def run(args):
    """``gradcheck plot``; returns the exit status (0 written, 2 usage or input error)."""
    try:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("gradcheck plot needs matplotlib: pip install matplotlib") \
                from None
        train_flg = not args.eval
        case = command_line_cases(args.target, (train_flg,), shape=args.shape,
                                  seed=args.seed)[0]
        layer, x = case.build()
        sweep = step_sweep(layer, x, target=args.wrt, train_flg=train_flg,
                           methods=tuple(dict.fromkeys(args.method or ["central"])),
                           seed=args.seed, label=_short(case.label))
        plot_sweep(sweep, args.output, heatmap=args.heatmap)
    except (UsageError, GradCheckInputError, OSError) as exc:
        print(f"gradcheck plot: error: {exc}", file=sys.stderr)
        return 2
    best = {m: float(sweep.steps[np.nanargmin(e)]) for m, e in sweep.errors.items()
            if np.isfinite(e).any()}
    print(f"wrote {args.output}: {sweep.label} [{sweep.mode}] target {args.wrt!r}; "
          + "; ".join(f"{m}: default step {sweep.default[m].step:.2g} -> "
                      f"{sweep.default[m].verdict}, smallest error at h={best.get(m, np.nan):.0e}"
                      for m in sweep.errors))
    return 0


def main(argv=None):
    """``gradcheck plot ARGS`` (the same as ``gradcheck.gate.cli.main(["plot", *ARGS])``)."""
    from gradcheck.gate.cli import main as gradcheck_main

    return gradcheck_main(["plot", *(sys.argv[1:] if argv is None else argv)])
