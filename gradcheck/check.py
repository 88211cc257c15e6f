"""``check_layer``: the analytic backward pass against finite differences."""

import platform
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from gradcheck.protocol.adapter import LayerAdapter, check_params_mapping, get_attr, layer_name
from gradcheck.protocol.problem import Problem
from gradcheck.protocol.state import StateSnapshot
from gradcheck.validate import (check_array, check_engine_options, check_options,
                                check_verdict_options, check_writable)
from gradcheck.errors import GradCheckInputError
from gradcheck.report import Finding, GradCheckReport

#: Below this many elements per target, parallel evaluation is not worth its start-up.
PARALLEL_MIN = 256


@dataclass(frozen=True)
class Options:
    """The engine options of one check (validated)."""

    method: str = "central"
    eps: Optional[float] = None
    atol: Optional[float] = None
    rtol: Optional[float] = None
    seed: int = 0
    samples: int = 64
    probes: int = 8
    nondet_tol: float = 0.0
    executor: Any = None
    n_jobs: Optional[int] = None
    parallel_min: int = PARALLEL_MIN
    min_resolution: float = 1e-3
    inconclusive: str = "fail"
    expect_zero: tuple = ()

    @property
    def parallel(self):
        return self.executor is not None or (self.n_jobs or 1) > 1


def check_layer(layer, x, *, train_flg=True, wrt=None, params=None, dout=None,
                method="central", strategy="auto", eps=None, atol=None, rtol=None,
                seed=0, samples=64, probes=8, precision="auto", nondet_tol=0.0, n_jobs=None,
                executor=None, min_resolution=1e-3, inconclusive="fail", expect_zero=(),
                sequence=True):
    """Check a layer's analytic ``backward`` against finite differences.

    The scalar checked is ``L = sum(forward(x) * dout)``: ``backward(dout)``
    must return ``dL/dx`` and store ``dL/dp`` in ``d`` + ``p`` for every
    trainable parameter ``p``. Each element of each target is perturbed in
    place, one forward call per perturbed point; the layer's state (running
    statistics, caches, random generators) is put back before every call and
    everything is restored exactly afterwards.

    Parameters
    ----------
    layer : object
        Has ``forward(x[, train_flg]) -> out`` and ``backward(dout) -> dx``.
    x : ndarray of shape (N, ...)
        Input; floating (integer input is converted to float64 and the report
        says so). Never modified.
    train_flg : bool, default True
        Passed to ``forward`` when it accepts it (``False`` = eval mode).
    wrt : list of str or None
        Targets to check (``"x"``, ``"gamma"``, ...); ``None`` = ``x`` and
        every parameter.
    params : dict of str to str or None
        ``{"gamma": "dgamma", ...}``; ``None`` discovers every ndarray
        attribute ``p`` that has an ndarray ``d`` + ``p`` after ``backward``.
    dout : ndarray of the output's shape or None
        Upstream gradient; ``None`` = standard normal from ``seed`` (never
        all ones: with ``dout = 1`` the true ``dx`` of train-mode batch
        normalisation is zero and any check passes vacuously). Never modified.
    method : {"central", "forward", "central4", "richardson", "complex"}
        Finite-difference formula: ``central`` (2 calls per element, the
        best accuracy per call, see ``benchmarks/``), ``forward`` (1),
        ``central4`` (4; fourth order, with an error estimate),
        ``richardson`` (6; extrapolation over ``h, h/2, h/4``, with an error
        estimate), ``complex`` (1; complex step ``Im f(x + ih) / h``, exact
        to rounding, for layers whose forward is complex-analytic).
    strategy : {"auto", "grouped", "elementwise", "jacobian", "projection", "sampled"}
        ``auto`` (default): ``grouped`` for targets of 32 elements or more,
        ``elementwise`` below (and with ``method="complex"``). ``grouped``:
        every element, as ``elementwise``, but elements whose outputs do not
        overlap are perturbed together, in one forward-call pair (the block
        structure learned by a few exact probes); every grouped value that
        fails is refined one element at a time, a few random projections back
        a PASS, and a structure shown wrong sends the target to
        ``elementwise`` (the report says which structure was used, how many
        calls it saved, or why it fell back; :mod:`gradcheck.engine.grouped`).
        ``elementwise``: every element of every target, one at a time (a
        vector-Jacobian product). ``jacobian``: the whole Jacobian, numerically and with one
        backward per output element (small layers). ``projection``:
        ``probes`` random projections ``u . (J v)`` against ``(J^T u) . v``,
        cost independent of the input size, wrong elements then located by
        bisection. ``sampled``: ``samples`` random elements per target.
    eps : float or None
        Absolute step for every element; ``None`` = from the *measured*
        noise of the forward and the element's magnitude,
        ``noise**(1/(p+1)) * max(1, |x_i|)``, shrunk when the truncation
        error measured along a random direction exceeds the rounding error
        (:mod:`gradcheck.engine.steps`).
    atol, rtol : float or None
        An element passes when ``|numerical - analytic| <= atol + rtol *
        |numerical|``. ``None`` = derived per element from the measured
        noise of its outputs, the measured truncation error and the target's
        own scale (:mod:`gradcheck.engine.tolerances`); given values are
        used exactly. The report states the tolerance of every element.
    seed : int, default 0
        Seed of the random ``dout``, projections and samples.
    samples : int, default 64
        Elements per target for ``strategy="sampled"``.
    probes : int, default 8
        Random projections per target for ``strategy="projection"``.
    precision : {"auto", "float64", "native"}
        ``auto``/``float64``: a float16/float32 layer is evaluated in float64
        on upcast copies of ``x``, its parameters and state, when its forward
        computes in its input's dtype (the report says so); ``native``:
        evaluated in the layer's own dtype with that dtype's tolerances.
    nondet_tol : float, default 0.0
        Largest difference allowed between two identical forward (or
        backward) passes; 0 demands bitwise reproducibility.
    n_jobs : int or None
        Evaluate large targets in this many local processes (the layer must
        be picklable).
    executor : concurrent.futures.Executor or None
        Evaluate large targets on this executor instead (e.g. a
        ``dask.distributed`` client's ``get_executor()``).
    min_resolution : float, default 1e-3
        A target whose resolution (the smallest single-element error it
        would catch) is coarser than this fraction of its gradient's scale
        is INCONCLUSIVE, not PASS.
    inconclusive : {"fail", "pass"}
        ``"fail"``: an INCONCLUSIVE target makes ``report.passed`` False;
        ``"pass"``: it does not (it is still reported as INCONCLUSIVE).
    expect_zero : sequence of str
        Targets whose gradient is zero for every input by the layer's
        structure (a bias right before a train-mode batch normalisation):
        they PASS when numerical and analytic gradients are both zero to
        within the stated resolution, instead of being INCONCLUSIVE.
    sequence : bool, default True
        Also run the sequence check (:mod:`gradcheck.protocol.history`): the
        layer called as a training loop calls it, a step then a second input
        without restoring in between, ``backward`` twice and with ``2 * dout``;
        backwards that depend on history, read state left over from an
        earlier call or leave NaN state are findings of their own. ``False``
        skips it.

    Returns
    -------
    GradCheckReport
        ``passed``, per-target ``results``, ``warnings``, ``str()`` table,
        ``to_dict()``, ``raise_if_failed()``.

    Raises
    ------
    GradCheckInputError
        Invalid option, bad ``x``/``dout``/parameter (NaN, inf, empty,
        boolean, complex), a layer that breaks the protocol
        (:class:`~gradcheck.errors.LayerProtocolError`) or raises
        (:class:`~gradcheck.errors.LayerCallError`).

    Notes
    -----
    Every target states its ``resolution``. Elements outside their first
    tolerance are refined by a step search before a FAIL is reported, and an
    element at a kink is judged by the hull of its one-sided derivatives and
    listed; see :mod:`gradcheck.engine.verdict`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_layer
    >>> from layers import BatchNormalization
    >>> bn = BatchNormalization(np.ones(4), np.zeros(4))
    >>> x = np.random.default_rng(0).normal(size=(5, 4))
    >>> report = check_layer(bn, x)
    >>> report.passed, [r.name for r in report.results]
    (True, ['x', 'gamma', 'beta'])
    """
    name = layer_name(layer)
    wrt = check_options(name, method=method, strategy=strategy, eps=eps, atol=atol, rtol=rtol,
                        seed=seed, wrt=wrt, train_flg=train_flg)
    check_engine_options(name, samples=samples, probes=probes, precision=precision,
                         nondet_tol=nondet_tol, n_jobs=n_jobs, executor=executor,
                         sequence=sequence)
    expect_zero = check_verdict_options(name, min_resolution=min_resolution,
                                        inconclusive=inconclusive, expect_zero=expect_zero)
    adapter = LayerAdapter(layer, train_flg)
    findings = []
    x_arr, converted = check_array(x, layer=name, target="x", what="x")
    if converted:
        findings.append(Finding("integer-input", False,
                                f"x has integer dtype {np.asarray(x).dtype}; checked as float64",
                                "x"))
    if params is not None:
        params = check_params_mapping(layer, params)
    _check_wrt(layer, name, wrt, params)
    dout_w = None
    if dout is not None:
        dout_arr, _ = check_array(dout, layer=name, target="x", what="dout")
        dout_w = np.array(dout_arr, copy=True)
    _check_size(name, strategy, x_arr, layer)
    opts = Options(method=method, eps=eps, atol=atol, rtol=rtol, seed=int(seed),
                   samples=int(samples), probes=int(probes), nondet_tol=float(nondet_tol),
                   executor=executor, n_jobs=n_jobs, min_resolution=float(min_resolution),
                   inconclusive=inconclusive, expect_zero=expect_zero)
    xw = np.array(x_arr, copy=True, order="C")
    original = StateSnapshot(layer)
    try:
        from gradcheck.protocol.precision import working_precision
        xw, dout_w, snapshot = working_precision(layer, adapter, original, xw, dout_w,
                                                 precision, findings)
        problem = Problem(adapter, xw, dout_w, params, wrt, snapshot, findings, seed=opts.seed,
                          nondet_tol=opts.nondet_tol)
        for t in problem.targets:
            if t.kind != "input":
                check_writable(t.array, layer=name, target=t.name, what=f"parameter {t.name!r}")
        _check_expect_zero(problem, opts)
        results = run_strategy(problem, strategy, opts)
        if sequence:
            from gradcheck.protocol.history import check_history
            check_history(problem, results, opts)
        snapshot.restore_all()
        return GradCheckReport(
            layer=name, input_shape=tuple(xw.shape), dtype=str(xw.dtype),
            train_flg=adapter.train_flg, method=method, strategy=strategy, seed=int(seed),
            results=results, findings=tuple(findings), forward_calls=adapter.forward_calls,
            backward_calls=adapter.backward_calls, versions=_versions(),
            input_dtype=str(x_arr.dtype), inconclusive=inconclusive)
    finally:
        original.restore_all()


def _check_wrt(layer, name, wrt, params):
    for w in wrt or ():
        ok = w == "x" or (w in params if params is not None
                          else isinstance(get_attr(layer, w), np.ndarray))
        if not ok:
            raise GradCheckInputError(
                f"wrt names {w!r}, which is neither 'x' nor an ndarray parameter of the layer",
                layer=name, target=w)


def _check_expect_zero(problem, opts):
    """An ``expect_zero`` name that is not a target here is a warning (a gate configuration
    lists the names for all of its targets), never silent."""
    names = [t.name for t in problem.targets]
    for t in opts.expect_zero:
        if t not in names:
            problem.findings.append(Finding(
                "expect-zero-unknown", False,
                f"expect_zero names {t!r}, which is not a target of this check (targets: "
                f"{', '.join(names)})", t))


def run_strategy(problem, strategy, opts):
    """One :class:`~gradcheck.report.TargetResult` per target of ``problem``."""
    from gradcheck.engine import strategies

    return strategies.run(problem, strategy, opts)


def _check_size(name, strategy, x, layer):
    if strategy != "jacobian":
        return
    n = x.size + sum(v.size for v in vars(layer).values()
                     if isinstance(v, np.ndarray) and v.dtype.kind == "f") \
        if hasattr(layer, "__dict__") else x.size
    # the output is usually the size of x (or smaller); refuse before any work
    from gradcheck.engine.jacobian import MAX_ENTRIES
    if x.size * n > MAX_ENTRIES:
        raise GradCheckInputError(
            f"strategy='jacobian' on an input of {x.size} elements needs about {x.size} "
            f"backward calls and a {x.size} x {n} Jacobian; that would take hours -- use "
            "strategy='elementwise' (2 forward calls per element) or 'projection' (cost "
            "independent of the size)", layer=name)


def _versions():
    from gradcheck import __version__
    return {"gradcheck": __version__, "numpy": np.__version__,
            "python": platform.python_version()}
