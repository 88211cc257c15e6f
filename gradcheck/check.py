"""``check_layer``: the analytic backward pass against finite differences."""

import platform
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from gradcheck.protocol.adapter import LayerAdapter, check_params_mapping, get_attr, layer_name
from gradcheck.protocol.problem import Run
from gradcheck.protocol.state import StateSnapshot
from gradcheck.validate import check_array, check_engine_options, check_options, check_writable
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

    @property
    def parallel(self):
        return self.executor is not None or (self.n_jobs or 1) > 1


def check_layer(layer, x, *, train_flg=True, wrt=None, params=None, dout=None,
                method="central", strategy="elementwise", eps=None, atol=None, rtol=None,
                seed=0, samples=64, probes=8, precision="auto", nondet_tol=0.0, n_jobs=None,
                executor=None, sequence=True):
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
    strategy : {"elementwise", "jacobian", "projection", "sampled"}
        ``elementwise``: every element of every target (a vector-Jacobian
        product). ``jacobian``: the whole Jacobian, numerically and with one
        backward per output element (small layers). ``projection``:
        ``probes`` random projections ``u . (J v)`` against ``(J^T u) . v``,
        cost independent of the input size, wrong elements then located by
        bisection. ``sampled``: ``samples`` random elements per target.
    eps : float or None
        Absolute step for every element; ``None`` = from the dtype and the
        element's magnitude, ``eps_machine**(1/3) * max(1, |x_i|)`` for
        central differences.
    atol, rtol : float or None
        An element passes when ``|numerical - analytic| <= atol + rtol *
        |numerical|`` (plus 3x the method's truncation estimate, where it
        has one). ``None`` = derived from the dtype, method and step
        (:mod:`gradcheck.engine.tolerances`); the report says which and why.
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
    Failing elements of a ``forward``/``central`` check are recomputed by
    Richardson extrapolation before a FAIL is reported, and elements where
    the one-sided differences disagree (a kink) with the analytic value
    between them are excluded and listed; see :mod:`gradcheck.engine.elementwise`.

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
    adapter = LayerAdapter(layer, train_flg)
    findings = []
    x_arr, converted = check_array(x, layer=name, target="x", what="x")
    if converted:
        findings.append(Finding("integer-input", False,
                                f"x has integer dtype {np.asarray(x).dtype}; checked as float64",
                                "x"))
    if params is not None:
        params = check_params_mapping(layer, params)
    if wrt is not None:
        for w in wrt:
            ok = w == "x" or (w in params if params is not None
                              else isinstance(get_attr(layer, w), np.ndarray))
            if not ok:
                raise GradCheckInputError(
                    f"wrt names {w!r}, which is neither 'x' nor an ndarray parameter of the layer",
                    layer=name, target=w)
    dout_w = None
    if dout is not None:
        dout_arr, _ = check_array(dout, layer=name, target="x", what="dout")
        dout_w = np.array(dout_arr, copy=True)
    _check_size(name, strategy, x_arr, layer)
    opts = Options(method=method, eps=eps, atol=atol, rtol=rtol, seed=int(seed),
                   samples=int(samples), probes=int(probes), nondet_tol=float(nondet_tol),
                   executor=executor, n_jobs=n_jobs)
    xw = np.array(x_arr, copy=True, order="C")
    original = StateSnapshot(layer)
    try:
        from gradcheck.protocol.precision import working_precision
        xw, dout_w, snapshot = working_precision(layer, adapter, original, xw, dout_w,
                                                 precision, findings)
        run = Run(adapter, xw, dout_w, params, wrt, opts, snapshot, findings)
        for t in (t for t in run.targets if t != "x"):
            check_writable(run.target_array(t), layer=name, target=t, what=f"parameter {t!r}")
        results = _dispatch(run, strategy)
        if sequence:
            from gradcheck.protocol.history import check_history
            check_history(run, results)
        snapshot.restore_all()
        return GradCheckReport(
            layer=name, input_shape=tuple(xw.shape), dtype=str(xw.dtype),
            train_flg=adapter.train_flg, method=method, strategy=strategy, seed=int(seed),
            results=results, findings=tuple(findings), forward_calls=adapter.forward_calls,
            backward_calls=adapter.backward_calls, versions=_versions(),
            input_dtype=str(x_arr.dtype))
    finally:
        original.restore_all()


def _dispatch(run, strategy):
    if run.method == "complex":
        from gradcheck.engine.complex import complex_step_results
        if strategy != "elementwise":
            raise GradCheckInputError(
                "method='complex' supports strategy='elementwise' only", layer=run.name)
        return complex_step_results(run)
    if strategy == "jacobian":
        from gradcheck.engine.jacobian import compare_jacobian
        return compare_jacobian(run)
    if strategy == "projection":
        from gradcheck.engine.projection import compare_projection
        return tuple(compare_projection(run, t) for t in run.targets)
    from gradcheck.engine.elementwise import compare
    results = []
    rng = np.random.default_rng([run.seed, 1])
    for t in run.targets:
        idx = None
        if strategy == "sampled":
            n = run.target_array(t).size
            idx = np.sort(rng.choice(n, size=min(run.opts.samples, n), replace=False))
        results.append(compare(run, t, idx, strategy))
    return tuple(results)


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
