"""``check_layer``: the analytic backward pass against finite differences."""

import dataclasses
import functools
import platform
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from gradcheck.protocol.adapter import (LayerAdapter, check_params_mapping, get_attr, layer_name,
                                       set_attr, settle_call, switch_back, switch_mode)
from gradcheck.protocol.calling import (cache_parameter, call_dout, floating_array, index_note,
                                        inputs_first, is_index_input, is_several,
                                        returns_several, taken_again)
from gradcheck.protocol.regularization import describe as describe_regularization
from gradcheck.protocol.update import (learning_rate_attribute, learning_rate_parameter,
                                       optimizer_paths)
from gradcheck.protocol.discovery import (FAILING_NOTES, accumulating_buffers, discover_by_calling,
                                          flush_accumulated, grad_candidates, layer_method,
                                          prefer_views, release_forward, said_names,
                                          names_parameter)
from gradcheck.protocol.paths import lookup, split_path
from gradcheck.protocol.problem import Problem
from gradcheck.protocol.stale import unwritten_read
from gradcheck.protocol.state import StateSnapshot, one_scan_per_check
from gradcheck.validate import (check_array, check_backward_kwargs, check_engine_options,
                                check_gradient_method, check_options, check_verdict_options,
                                check_writable)
from gradcheck.errors import GradCheckInputError, LayerCallError
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


def _settled(check):
    """``check`` (:func:`check_layer`) with the forward pass of a layer whose ``__call__``
    calls ``forward`` settled first on ``x`` (:func:`~gradcheck.protocol.adapter.settle_call`),
    for the whole check; a ``call-forward`` note says when ``__call__`` is taken."""

    @functools.wraps(check)
    def settled(layer, x, *, train_flg=True, **options):
        settled = settle_call(layer, x, train_flg)
        try:
            report = check(layer, x, train_flg=train_flg, **options)
        finally:
            release_forward(layer)
        f, b = report.discovery_calls
        report = dataclasses.replace(report, discovery_calls=(f + settled.forward_calls, b))
        if settled.note is None:
            return report
        return dataclasses.replace(report, findings=(
            Finding("call-forward", False, settled.note),) + report.findings)

    return settled


@one_scan_per_check
@_settled
def check_layer(layer, x, *, train_flg=True, wrt=None, params=None, dout=None,
                method="central", strategy="auto", eps=None, atol=None, rtol=None,
                seed=0, samples=64, probes=8, precision="auto", nondet_tol=0.0, n_jobs=None,
                executor=None, min_resolution=1e-3, inconclusive="fail", expect_zero=(),
                sequence=True, backward_kwargs=None, gradient_method=None):
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
        Has ``forward(x[, train_flg]) -> out`` and ``backward(dout) -> dx``
        (or the conventions of ``x`` below; see README "Conventions").
    x : ndarray of shape (N, ...), tuple, list or dict
        Input; floating (integer input is converted to float64 and the report
        says so, unless it is clearly indices: an embedding, a
        ``forward(idx)``). A tuple (or a list of arrays) is the positional
        inputs of ``forward``, a dict its keyword inputs: every floating input
        is a target named from ``forward``'s signature, the others (labels,
        indices, masks, option dicts) pass through untouched; ``forward`` may
        return a tuple (``dout`` is then a tuple) and ``backward`` one gradient
        per floating input. Never modified.
    train_flg : bool, default True
        Passed to ``forward`` when it accepts it (``False`` = eval mode).
    wrt : list of str or None
        Targets to check (``"x"``, ``"gamma"``, ...); ``None`` = ``x`` and
        every parameter.
    params : dict of str to str or None
        ``{"gamma": "dgamma", ...}``; ``None`` discovers them after one
        ``backward`` (:mod:`gradcheck.protocol.discovery`): ``p`` with
        ``dp``/``p_grad``/``grad_p``/Torch7's ``gradP`` (arrays and scalars),
        ``params``/``grads`` dicts and lists, accumulating ``parameters``/
        ``gradients`` dicts, sub-layers (``blocks.0.W``), the gradients a
        one-input ``backward`` returns after ``dx`` (``return dx, dW, db``:
        matched by shape and order); attributes ``forward`` rebinds are state.
        The report lists what was considered and not checked.
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
        be picklable); a target whose forward calls would take less than
        :data:`gradcheck.engine.parallel.BREAK_EVEN` seconds serially (from
        the measured time of a call) is evaluated serially, with a note.
    executor : concurrent.futures.Executor or None
        Evaluate large targets on this executor instead (e.g. a
        ``dask.distributed`` client's ``get_executor()``: the layer is
        scattered to its workers once); always used.
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
        layer called as a training loop calls it, a step at another input then
        the check's own again without restoring in between, ``backward`` twice and with ``2 * dout``;
        backwards that depend on history, read state left over from an
        earlier call or leave NaN state are findings of their own. ``False``
        skips it.
    backward_kwargs : dict or None
        Keyword arguments given to every ``backward`` call, for a ``backward`` that takes
        a required value the check cannot know (``backward(dout, scale)``: the check
        raises, naming it, without one). A learning rate is found and handled without
        it (its step read as the gradient and undone); naming it here fixes its value
        instead.
    gradient_method : str or None
        The name of the layer's method, called with no argument, that computes the
        parameter gradients after ``backward`` (EpyNN: ``backward(dX)`` fills caches,
        ``compute_gradients()`` fills ``self.g``, ``update_parameters()`` steps); it is
        called after every ``backward`` of the check. ``None``: when ``backward`` leaves
        no gradient for floating arrays the layer holds, the one public method whose name
        says it computes gradients (``compute``/``calc``/``calculate`` and ``grad(s)``/
        ``gradient(s)``, and nothing of ``update``/``step``/``apply``/``zero``/``reset``/
        ``flush``/``train``) is called, and the report says so.

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
    backward_kwargs = check_backward_kwargs(name, backward_kwargs,
                                            layer_method(layer, "backward"))
    gradient_method = check_gradient_method(name, layer, gradient_method)
    adapter = LayerAdapter(layer, train_flg)
    findings = []
    regularized = describe_regularization(layer)
    if regularized:
        findings.append(Finding("regularization", False, regularized))
    call = None
    index = is_index_input(layer, x, train_flg)
    if _needs_wrapper(layer, x, index, backward_kwargs):
        layer, adapter, call, x, params, wrt, expect_zero = _wrap(
            layer, x, name, train_flg, params, wrt, expect_zero, findings, seed, index,
            backward_kwargs)
    adapter.gradient_method = gradient_method
    _dx_wanted(adapter, call, wrt)
    x_arr, converted = _input_array(name, x, findings)
    params = _checked_names(layer, name, params, wrt, call)
    dout_w = _working_dout(name, dout, call)
    _check_size(name, strategy, x_arr, layer)
    opts = Options(method=method, eps=eps, atol=atol, rtol=rtol, seed=int(seed),
                   samples=int(samples), probes=int(probes), nondet_tol=float(nondet_tol),
                   executor=executor, n_jobs=n_jobs, min_resolution=float(min_resolution),
                   inconclusive=inconclusive, expect_zero=expect_zero)
    xw = np.array(x_arr, copy=True, order="C")
    switched, text, original = _switched_snapshot(layer, call, adapter, train_flg, findings)
    try:
        if call is not None:
            dout_w = call_dout(call, adapter, xw, dout, dout_w, findings)
        problem, not_checked, discovery = _problem(
            name, layer, adapter, original, call, xw, dout_w, params, wrt, opts, precision,
            findings)
        results = _verdicts(problem, adapter, strategy, opts, sequence, findings)
        problem.snapshot.restore_all()
        findings.extend(_zero_state(layer, results, not_checked, call,
                                    getattr(problem, "kept_state", ())))
        if call is not None:
            results, findings, not_checked = call.rename(results, findings, not_checked)
        return GradCheckReport(
            layer=name, input_shape=tuple(call.shape if call else problem.xw.shape),
            dtype=str(problem.xw.dtype),
            train_flg=adapter.train_flg, method=method, strategy=strategy, seed=int(seed),
            results=results, findings=tuple(findings), forward_calls=adapter.forward_calls,
            backward_calls=adapter.backward_calls, versions=_versions(),
            input_dtype=str(np.asarray(x).dtype if converted else x_arr.dtype),
            inconclusive=inconclusive,
            not_checked=tuple(not_checked), discovery_calls=discovery,
            single_mode=switched is None and text is not None and not adapter.train_flg)
    except GradCheckInputError as exc:
        replaced = _explained(exc, layer, adapter, xw, call, converted, x)
        if replaced is None:
            raise
        raise replaced[0] from replaced[1]
    finally:
        original.restore_all()
        switch_back(switched)


def _input_array(name, x, findings):
    """``(x as a floating array, converted)``; an integer ``x`` converted says so."""
    x_arr, converted = check_array(x, layer=name, target="x", what="x")
    if converted:
        findings.append(Finding("integer-input", False,
                                f"x has integer dtype {np.asarray(x).dtype}; checked as float64",
                                "x"))
    return x_arr, converted


def _switched_snapshot(layer, call, adapter, train_flg, findings):
    """``(switched, note, snapshot)``: the layer put in the mode asked for
    (:func:`switch_mode`, its note a ``mode-switch`` finding), then its state saved;
    switched before the snapshot, so the check's restores keep the mode asked for."""
    switched, text = switch_mode(call.layer if call is not None else layer, adapter, train_flg)
    if text:
        findings.append(Finding("mode-switch", False, text))
    try:
        return switched, text, StateSnapshot(layer)
    except BaseException:
        switch_back(switched)
        raise


def _needs_wrapper(layer, x, index, backward_kwargs):
    """Whether ``layer`` is checked through a :class:`~gradcheck.protocol.calling.CallLayer`
    (several inputs, indices, a backward taking a learning rate, optimizer objects, inputs
    again, several gradients returned, several outputs): :func:`_wrap`."""
    return bool(
        is_several(x) or index or learning_rate_parameter(layer) or backward_kwargs
        or learning_rate_attribute(layer)
        or optimizer_paths(layer) or inputs_first(layer) or taken_again(layer, 0)
        or cache_parameter(layer)
        or returns_several(layer_method(layer, "backward"))
        or (floating_array(x) and returns_several(layer_method(layer, "forward"), dicts=True)))


def _dx_wanted(adapter, call, wrt):
    """Tell the adapter (and a wrapper) whether an input is a target: with ``wrt`` naming
    parameters only, a backward that returns no input gradient is accepted."""
    adapter.dx_wanted = wrt is None or "x" in wrt
    if call is not None:
        call.dx_wanted = wrt is None or any(n == "x" or n.startswith("inputs[") for n in wrt)


def _working_dout(name, dout, call):
    """The caller's ``dout`` validated and copied (``None``: drawn later; a tuple, list or
    dict for a wrapped layer's several outputs: :func:`call_dout` reads it)."""
    if dout is None or (call is not None and isinstance(dout, (tuple, list, dict))):
        return None
    dout_arr, _ = check_array(dout, layer=name, target="x", what="dout")
    return np.array(dout_arr, copy=True)


def _problem(name, layer, adapter, original, call, xw, dout_w, params, wrt, opts, precision,
             findings):
    """``(Problem, not_checked, discovery calls)``: the parameters discovered (their calls
    counted apart), the working precision chosen, the targets' arrays writable."""
    from gradcheck.protocol.precision import working_precision

    counts = (adapter.forward_calls, adapter.backward_calls)
    own = call.own_paths() if call is not None else set()
    params, not_checked, work = _parameters(
        layer, adapter, original, xw, dout_w, params, opts.seed, findings,
        exclude={"x"} | own, apart=call.step_params({}) if call is not None else (), wrt=wrt)
    discovery = (adapter.forward_calls - counts[0], adapter.backward_calls - counts[1])
    adapter.forward_calls, adapter.backward_calls = counts  # reported apart
    if call is not None and call.lr_attr is not None and call.stepped:
        rate = f"layer.{call.lr_attr}"
        not_checked = [(p, "the learning rate backward steps with (learning-rate note)"
                        if p == rate else why) for p, why in not_checked]
    if call is not None:
        discovery = (discovery[0] + call.step_calls[0], discovery[1] + call.step_calls[1])
        params = {**call.input_params(), **call.layer_params(),
                  **call.step_params(params or {}), **params}
        if not call.targets and not params:
            raise GradCheckInputError(
                "nothing to differentiate: no input is a floating array ("
                + "; ".join(f"{n}: {why}" for n, why in call.skipped)
                + ") and no parameter was found; pass floating arrays (np.asarray(x, "
                "dtype=float)) or name the parameters with params=", layer=name)
        if not call.targets and wrt is None:
            wrt = list(params)
    xw, dout_w, snapshot = working_precision(layer, adapter, work, xw, dout_w, precision,
                                             findings)
    problem = Problem(adapter, xw, dout_w, params, wrt, snapshot, findings, seed=opts.seed,
                      nondet_tol=opts.nondet_tol)
    for t in problem.targets:
        if t.kind != "input":
            check_writable(t.array, layer=name, target=t.name, what=f"parameter {t.name!r}")
    return problem, not_checked, discovery


def _verdicts(problem, adapter, strategy, opts, sequence, findings):
    """The targets' results by ``strategy``, the notes that follow them, then the sequence
    check's findings (``sequence``)."""
    _check_expect_zero(problem, opts)
    _untouched_accumulators(problem, adapter)
    start = len(findings)
    results = _not_a_function(findings, run_strategy(problem, strategy, opts), start)
    _scalar_output_note(problem)
    if adapter.flag_refused:
        findings.append(Finding("flag-refused", False, adapter.flag_refused))
    if adapter.dx_missing:
        findings.append(Finding("no-input-gradient", False, (
            "backward returned no input gradient (None): accepted, as the input is not "
            "among wrt; only the parameters named were checked")))
    if sequence:
        from gradcheck.protocol.history import check_history
        check_history(problem, results, opts)
    return results


def _explained(exc, layer, adapter, xw, call, converted, x):
    """``(error, cause)`` to raise instead of ``exc`` (an explanation added, a wrapper's
    names given back), or ``None`` to raise ``exc`` as it is."""
    explained = unwritten_read(exc, layer, adapter, xw) if call is None else exc
    if explained is not exc:
        return explained, exc.__cause__
    if converted and isinstance(exc, LayerCallError) and isinstance(exc.__cause__, IndexError):
        return LayerCallError(
            f"{str(exc).split(': ', 1)[-1]} (x has integer dtype {np.asarray(x).dtype} and "
            "was cast to float64 for the check: for integer indices, name the layer "
            "*Embedding* or forward's first parameter idx, ids, indices, tokens or t, "
            "and x stays integer, only the parameters being checked)",
            layer=exc.layer, target=exc.target), exc.__cause__
    renamed = call.renamed(exc) if call is not None else exc
    return None if renamed is exc else (renamed, exc.__cause__ or exc)


def _zero_state(layer, results, not_checked, call, kept=()):
    """A ``zero-state`` note when a gradient vanished and the layer's kept state was zero.

    A recurrent layer that keeps ``h`` (zeros before its first call) has
    ``dWh = h_prev.T @ da = 0`` there: INCONCLUSIVE, rightly; the note names the
    state that was all zeros when the check began, or ``None`` (not set yet, so
    forward starts it) when it is state the layer keeps: in ``kept``, the paths
    a second forward read before writing them (the sequence check's
    ``problem.kept_state``), so the user knows what to change.
    """
    from gradcheck.engine.verdict import vanished as vanished_targets
    from gradcheck.protocol.discovery import STATE_REASON
    from gradcheck.protocol.paths import resolve

    vanished = vanished_targets(results)
    if not vanished:
        return []
    zero, unset = [], []
    for path, why in not_checked:
        if why != STATE_REASON:
            continue
        value = resolve(layer, path)
        shown = call.display(path) if call is not None else path
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size \
                and not np.any(value):
            zero.append(shown)
        elif value is None and path in kept:
            unset.append(shown)
    if not zero and not unset:
        return []
    was = " and ".join(w for w in ("all zeros" if zero else "",
                                   "None (not set yet: forward starts it)" if unset else "")
                       if w)
    shown = [call.display(n) if call is not None else n for n in vanished]
    return [Finding("zero-state", False, (
        f"{', '.join(map(repr, shown))}: the gradient vanished, and the state the layer keeps "
        f"({', '.join(f'`{n}`' for n in zero + unset)}) was {was} when the check began "
        "(forward writes it: a hidden state, a running statistic); a gradient that flows "
        "through kept state vanishes where that state is zero. Check after a forward call on "
        "other data, or with the state set to non-zero values"), shown[0])]


def _wrap(layer, x, name, train_flg, params, wrt, expect_zero, findings, seed, index=False,
          backward_kwargs=None):
    """A :class:`~gradcheck.protocol.calling.CallLayer` around ``layer`` for several inputs
    (or integer indices, a backward that takes a learning rate, optimizer objects whose
    ``update`` backward calls, ``backward_kwargs``), its adapter, and the options in the
    wrapper's names."""
    from gradcheck.protocol.calling import CallLayer, FunctionPair

    several = is_several(x)
    if not several:
        if index:
            findings.append(Finding("integer-input", False, index_note(layer, x)))
        x = (x,)
    call = CallLayer(layer, x, name, backward_kwargs=backward_kwargs)
    if call.labels:
        findings.append(Finding("loss-backward", False, (
            f"backward takes {', '.join(call.labels)} again (backward(dvalues, "
            f"{', '.join(call.labels)}): a loss, NNFS style): called as the training loop "
            "does, with the prediction (or the output the layer keeps in self.output, for a "
            "combined softmax and loss) and the labels; its result, the gradient of the mean "
            "loss, was scaled by dout (per sample for one loss per sample)")))
    if call.dict_input is not None:
        findings.append(Finding("dict-input", False, (
            f"forward takes the dict itself (forward({call.dict_input})): its floating arrays "
            f"({', '.join(call.targets) or 'none'}) were checked as inputs named by their keys, "
            "the others passed through; backward may return their gradients as a dict by key "
            "or in key order")))
    if call.inputs_first:
        taken = ", ".join(call.call_names[:call.inputs_first])
        findings.append(Finding("backward-takes-inputs", False, (
            f"backward takes {taken} before the upstream gradient (backward({taken}, "
            "gradOutput): Torch7 style): called as the training loop does, with the inputs of "
            "the last forward")))
    if call.again:
        shown = ", ".join(f"forward's input {n!r}" if n else "forward's output"
                          for n in call.again)
        findings.append(Finding("backward-takes-inputs", False, (
            f"backward takes {shown} again after the upstream gradient: called as the "
            "training loop does, with the input and output of the last forward")))
    findings.extend(_cache_notes(layer, call))
    findings.extend(_rate_findings(call, train_flg, seed))
    if call.optimizers:
        unmapped = call.find_updates(train_flg, seed)
        findings.append(_update_note(call, unmapped))
    adapter = LayerAdapter(call, train_flg)
    adapter.gradient_owner = layer  # its gradient method: the wrapped layer's
    if call.flag is None:
        adapter.flag_mode = None  # no train/eval switch: one mode, as the layer's own
    call.find_labels(adapter, wrt)
    if not several:
        returned = call.find_returned(adapter, seed)
        if returned:
            findings.append(Finding("gradients-returned", False, returned))
    if isinstance(layer, FunctionPair):
        from gradcheck.protocol.batchmean import (find_mean_scale, mean_scale_note,
                                                  unscaled_mean_note)

        call.mean_scale = find_mean_scale(call, train_flg, seed)
        if call.mean_scale:
            findings.append(Finding("batch-mean-gradients", False,
                                    mean_scale_note(call, call.mean_scale)))
        elif unscaled_mean_note(call):
            findings.append(Finding("batch-mean-gradients", False, unscaled_mean_note(call)))
    return (call, adapter, call, call.x, call.internal_params(params),
            call.internal_names(wrt), tuple(call.internal_names(expect_zero) or ()))


def _cache_notes(layer, call):
    """The ``cache-passed`` finding of a method pair whose backward takes forward's
    returned cache, or of a ``forward(ctx, ...)``/``backward(ctx, dout)`` pair (a list of
    at most one)."""
    from gradcheck.protocol.calling import FunctionPair

    if call.pair is not None:
        taken = cache_parameter(layer, call.backward_kwargs)
        return [Finding("cache-passed", False, (
            f"backward takes forward's returned cache (backward(dout, {taken})): each "
            f"forward's own cache (the last value it returns) was passed as {taken!r} to the "
            "backward that follows it, as the training loop does"))]
    named = cache_parameter(layer)
    if named is not None and named in call.backward_kwargs:
        return [Finding("cache-passed", False, (
            f"backward_kwargs gives {named!r}, the same value to every backward call; "
            f"forward returns a cache itself: without {named!r} in backward_kwargs, each "
            "forward's own cache is passed to the backward that follows it"))]
    if isinstance(layer, FunctionPair) and layer.takes_ctx:
        given = ("a copy of the one given" if layer.ctx_given is not None
                 else "save_for_backward(*arrays) keeps them in ctx.saved_tensors")
        return [Finding("cache-passed", False, (
            "forward and backward take ctx first (torch.autograd.Function style): each "
            f"forward got a fresh context ({given}), passed to the backward that follows it"))]
    return []


def _rate_findings(call, train_flg, seed):
    """The steps of a backward that takes a learning rate or reads one the layer holds
    found (:meth:`~gradcheck.protocol.calling.CallLayer.find_steps`), and what the
    report says of them (none for no rate)."""
    if call.lr is None and call.lr_attr is None:
        return []
    call.find_steps(train_flg, seed)
    note = _step_note(call) if call.lr is not None else _attribute_step_note(call)
    found = [note] if note is not None else []
    if call.lr_dx_change is not None or call.lr_unscaled:
        found.append(_lr_finding(call))
    return found


def _step_note(call):
    """What was done with a backward that takes a learning rate."""
    from gradcheck.protocol.update import LEARNING_RATE

    rate = f"{call.lr[0]}={call.rate:g}" + (" (from backward_kwargs)"
                                            if call.rate_given is not None else "")
    if not call.stepped:
        if call.rate != LEARNING_RATE and call.rate_given is None:
            rate = (f"{call.lr[0]}={call.rate:g} (its default: a parameter no array is "
                    "stepped by is no learning rate, an ELU's or leaky ReLU's alpha)")
        return Finding("learning-rate", False, f"backward takes {call.lr[0]}: called with "
                       f"{rate}; it stepped no array of the layer")
    names = ", ".join(call.stepped)
    return Finding("learning-rate", False, (
        f"backward takes {call.lr[0]} and steps {names} itself: called with {rate}, the "
        f"gradient of each was read from its step as (before - after) / {call.lr[0]} (plain "
        "SGD; a momentum or Adam step is not the gradient and FAILs), and the step was undone "
        "after every call"))


def _attribute_step_note(call):
    """What was done with the learning rate a layer holds as an attribute that its backward
    steps with (``None`` when it steps nothing with it: an ELU's ``self.alpha``)."""
    from gradcheck.protocol.update import LEARNING_RATE

    if not call.stepped:
        return None
    name, own = call.lr_attr, call.own_rate
    why = (" (it was 0: no step, so no gradient to read, and a broken one PASSed)"
           if own == 0 else " (a power of 2: the step is undone exactly)")
    return Finding("learning-rate", False, (
        f"the layer holds {name}={own:g} and backward steps {', '.join(call.stepped)} itself "
        f"with it: {name} was set to {LEARNING_RATE:g} around every backward call of the "
        f"check{why} and put back to {own:g} after each; the gradient of each was read from "
        f"its step as (before - after) / {name} (plain SGD; a momentum or Adam step is not "
        "the gradient and FAILs), and the step was undone after every call"))


def _lr_finding(call):
    """The failing finding of a backward whose returned gradient depends on its rate, or
    that changes arrays by amounts that depend on it but not in proportion to it."""
    from gradcheck.protocol.update import LEARNING_RATE

    if call.lr is None:  # the rate the layer holds (self.learning_rate)
        name, parts = f"self.{call.lr_attr}", []
        rates = (f"backward(dout) with {name}={2 * LEARNING_RATE:g} and with {name}="
                 f"{LEARNING_RATE:g} from the same state")
    else:
        name, parts = call.lr[0], []
        rates = (f"backward(dout, {name}={2 * LEARNING_RATE:g}) and backward(dout, {name}="
                 f"{LEARNING_RATE:g}) from the same state")
    if call.lr_dx_change is not None:
        parts.append(
            f"backward's returned gradient depends on {name}: {rates} returned gradients "
            f"that differ by up to {call.lr_dx_change:.3g} (dx is the gradient whatever the "
            f"step size: {name} * input_gradient, or an input gradient taken with the "
            "weights after the step, is right at one rate only)")
    if call.lr_unscaled:
        held = ", ".join(call.lr_unscaled)
        parts.append(
            f"backward changes {held} by amounts not in proportion to {name} ({rates}: "
            "another function of the rate, or the same at both in an array forward reads): "
            f"no plain SGD step ({name} * gradient), so no gradient can be read from it")
    return Finding("backward-learning-rate", True, "; ".join(parts))


def _update_note(call, unmapped):
    """What was done with the optimizer objects whose ``update`` backward calls."""
    held = ", ".join(call.optimizers)
    if not call.updated:
        return Finding("optimizer-update", False, (
            f"the layer holds optimizer objects ({held}); backward called none of their "
            "update(w, grad) on an array of the layer"))
    names = ", ".join(call.updated)
    extra = (f"; {unmapped} update call(s) on an array the layer does not hold were not "
             "read" if unmapped else "")
    return Finding("optimizer-update", False, (
        f"backward updates {names} through the optimizer objects the layer holds ({held}): "
        "the gradient of each was read from the optimizer's update(w, grad) call, recorded "
        "by a stand-in that returns a moved copy of w (a dx taken from the updated weights "
        "FAILs; the weights and the optimizers, never called, are put back after every "
        f"call){extra}"))


def check_function(forward, backward, *inputs, **options):
    """Check a pair of functions, CS231n style, like a layer.

    ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) ->
    (dx, dw, db, ...)``, one gradient per floating input, in order (or one
    per input, ``None`` for the others). Built as a layer inside the toolkit
    (:class:`~gradcheck.protocol.calling.FunctionPair`), so the report, the
    options and the strategies are those of :func:`check_layer`.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs) -> (out, cache)``; ``out`` an ndarray, a scalar
        or a tuple of arrays (then ``dout`` is a tuple).
    backward : callable or None
        ``backward(dout, cache) -> grad or tuple of grads``. ``None``:
        ``forward`` returns ``(value, grads)`` itself, ``value`` a scalar and
        ``grads`` its gradient(s) (``softmax_loss(x, y) -> (loss, dx)``); a
        model's bound ``loss`` method whose model keeps its parameters in a
        ``params`` dict (CS231n's ``TwoLayerNet``: ``model.loss(X, y) -> (loss,
        grads)``) is checked over ``model.params`` (targets named by its keys),
        its inputs not differentiated.
    *inputs : ndarray, or anything passed through
        Floating arrays are targets, named from ``forward``'s signature
        (``x``, ``w``, ``b``); integer labels, masks and dicts (``bn_param``:
        state, restored after every call) pass through untouched.
    **options
        Every keyword of :func:`check_layer` (``strategy``, ``wrt``,
        ``dout``, ``method``, ...).

    Returns
    -------
    GradCheckReport

    Raises
    ------
    GradCheckInputError
        Not callables, no inputs, or anything :func:`check_layer` raises
        (a backward returning too few gradients, a wrong tuple ``dout``).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_function
    >>> def affine_forward(x, w, b):
    ...     return x @ w + b, (x, w)
    >>> def affine_backward(dout, cache):
    ...     x, w = cache
    ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
    >>> rng = np.random.default_rng(0)
    >>> report = check_function(affine_forward, affine_backward, rng.normal(size=(3, 4)),
    ...                         rng.normal(size=(4, 2)), rng.normal(size=2))
    >>> report.passed, [r.name for r in report.results]
    (True, ['x', 'w', 'b'])
    """
    from gradcheck.protocol.calling import FunctionPair, ctx_inputs

    fname = getattr(forward, "__name__", type(forward).__name__)
    if not callable(forward) or not (backward is None or callable(backward)):
        raise GradCheckInputError("check_function needs forward(*inputs) -> (out, cache) and "
                                  "backward(dout, cache) (or None) as callables", layer=fname)
    if not inputs:
        raise GradCheckInputError("check_function needs the inputs of forward after the two "
                                  "functions: check_function(f, b, x, w, ...)", layer=fname)
    pair = FunctionPair(forward, backward)
    inputs = ctx_inputs(pair, inputs)
    if pair.takes_ctx:  # a class's static methods: named by the class (CtxLinear.forward)
        fname = getattr(forward, "__qualname__", fname)
    pair._gradcheck_name = fname  # the inputs named by forward's parameters (after ctx)
    pair._gradcheck_signature = functools.partial(forward, None) if pair.takes_ctx else forward
    return check_layer(pair, tuple(inputs), **options)


def _parameters(layer, adapter, original, xw, dout, params, seed, findings, exclude, apart=(),
                wrt=None):
    """``(params, not_checked, snapshot)``: the parameters to check, what was considered
    and not checked (with the reason), and the snapshot the check works from.

    ``apart`` names parameters found by other means (read from a step or an optimizer's
    ``update`` call): with them, a floating array without a gradient is warned about on
    its own, never as "only the input was checked". Views of a flat parameter buffer that
    ``wrt`` names are checked in its place (:func:`~gradcheck.protocol.discovery.prefer_views`).

    Discovery calls the layer once (:func:`~gradcheck.protocol.discovery.discover_by_calling`);
    scalar parameters held as Python floats are replaced by 0-d float64 arrays for the
    check (perturbed in place like any array; ``original`` puts the floats back), so
    the snapshot is then taken anew.
    """
    not_checked = []
    wrapped = lookup(layer, "input_grads", None) is not None  # a CallLayer
    held = list(layer.inputs.values()) if wrapped else []
    given, (flushed, original) = original, _flushed_start(layer, original, findings)

    def discover():  # one forward/backward: the parameters, and what is not one
        return discover_by_calling(adapter, xw, dout, seed, exclude=exclude, inputs=held,
                                   strict=wrapped)

    def discover_flushed(flushed, before, snapshot):  # and without the flush if it broke
        try:
            found = discover()
        except LayerCallError:
            if not flushed:
                raise
            found = None
        if found is None and flushed:
            return _unflush(layer, adapter, before, discover, findings)
        return snapshot, found

    if params is None:
        original, found = discover_flushed(flushed, given, original)
        created = _created(layer, found)
        if created:  # made by the first forward: checked from the state after one, on
            from gradcheck.protocol.history import first_input  # another input of x's shape

            adapter.forward(first_input(xw, np.random.default_rng([seed, 13])))
            created_state = StateSnapshot(layer)
            flushed = flush_accumulated(layer)  # numpy-ml: forget the creating input
            adapter.accumulating = accumulating_buffers(layer)  # created with them
            original, found = discover_flushed(flushed, created_state, StateSnapshot(layer))
            findings.append(Finding("created-by-forward", False, (
                f"{', '.join(created)} {'do' if len(created) > 1 else 'does'} not exist "
                "before the first forward (None): the check made one forward call (on another "
                "input of x's shape: its batch reversed, one row repeated) to create "
                f"{'them' if len(created) > 1 else 'it'} and checked the layer from there; "
                "the layer is put back as it was given")))
        if found is not None:
            prefer_views(found, wrt)
            params, not_checked = found.params, found.not_checked
            findings.extend(_discovery_findings(found, apart))
    else:
        left_out, not_checked, notes = _not_named(discover, params)
        findings.extend(Finding(kind, False, text) for kind, text in notes)
        findings.extend(Finding("not-in-params", False, (
            f"{p} has a gradient ({g}) but is not in params=: not checked; add it to "
            "check it"), p) for p, g in left_out)
    scalars = [p for p in params or () if isinstance(get_attr(layer, p), (float, np.floating))]
    for p in scalars:
        set_attr(layer, p, np.array(get_attr(layer, p), dtype=np.float64))
    return params, not_checked, StateSnapshot(layer) if scalars else original


def _discovery_findings(found, apart):
    """What the report says of a discovery: its notes, the floating arrays held without a
    gradient (a warning), the gradients left ``None`` and the parameters whose gradient
    cannot be told by shape (failing); ``apart``: parameters found by other means."""
    out = [Finding(kind, kind in FAILING_NOTES, text) for kind, text in found.notes]
    if not found.params and not apart and found.floating:
        out.append(Finding("no-parameters-found", False, _no_params(found)))
    elif found.floating:
        out.extend(Finding("no-gradient-found", False, _no_grad(found, p), p)
                   for p in found.floating)
    out.extend(Finding("gradient-not-set", True, _unset(found, p, g), p)
               for p, g in found.unset)
    out.extend(Finding("gradient-ambiguous", True, _ambiguous(found, *a), a[0])
               for a in found.ambiguous)
    return out


def _not_named(discover, params):
    """With ``params=`` given: ``(left_out, not_checked, notes)``, the parameters
    ``discover()`` finds besides them (``(param, gradient)``), the not-checked list with
    them (a parameter left out of ``params=`` is never dropped silently) and the
    discovery's notes of a gradient method it calls after backward."""
    try:
        found = discover()
    except LayerCallError:
        raise  # the layer's own error: never eaten
    except GradCheckInputError:
        found = None  # the check's own calls say what is wrong
    if found is None or not isinstance(params, dict):
        return [], [], []
    notes = [(kind, text) for kind, text in found.notes if kind == "gradient-method"]
    named = {p for pair in params.items() for n in pair for p in split_path(str(n), "+")}
    left_out = [(p, g) for p, g in found.params.items() if p not in named]
    return left_out, [(p, f"not in params= (its gradient {g} was found)")
                      for p, g in left_out] + [
        (p, why) for p, why in found.not_checked if p not in named], notes


def _flushed_start(layer, original, findings):
    """``(inputs flushed, working snapshot)``: a layer holding inputs of earlier forward
    calls (numpy-ml's ``self.X``) is flushed, as a training step's ``update()`` would, and
    the check works from there (``original`` still puts it back as given)."""
    flushed = flush_accumulated(layer)
    if not flushed:
        return 0, original
    findings.append(Finding("flushed", False, (
        "the layer held inputs of earlier forward calls for its backward (numpy-ml's "
        "self.X): flush_gradients() was called before the check, as a training step's "
        "update() does; the layer is put back as it was given")))
    return flushed, StateSnapshot(layer)


def _unflush(layer, adapter, before, discover, findings):
    """A ``flush_gradients()`` after which the discovery's backward raises (and before which
    it did not): back to the state ``before`` it, checked without flushing (and without the
    sequence check, whose training step would flush). ``(snapshot, discovery)``."""
    before.restore_all()
    adapter.no_flush = True
    for f in [f for f in findings if f.kind == "flushed"]:
        findings.remove(f)
    findings.append(Finding("flush-breaks-backward", False, (
        "after flush_gradients() (what numpy-ml's update() calls after every step) backward "
        "raises: the layer was checked without flushing (numpy-ml's RNNCell, for one, sets "
        "dLdA_accumulator to [] where its backward expects None)")))
    return StateSnapshot(layer), discover()


def _created(layer, found):
    """Parameter paths (and arrays with a gradient beside them) that do not hold an array
    before the first forward: ``self.W = None`` until ``forward`` creates it."""
    if found is None:
        return []
    paths = dict.fromkeys(list(found.params) + found.created)
    return [p for p in paths if any(
        not isinstance(get_attr(layer, part), (np.ndarray, float, np.floating))
        for part in split_path(p, "+"))]


def _guess_grad(found, path):
    """The attribute backward was seen to write that is named like ``path``'s gradient
    (``dw`` for ``W``: :func:`~gradcheck.protocol.discovery.names_parameter`), when there
    is one; ``None`` otherwise -- an array of its shape alone is no gradient
    (:func:`_unnamed`)."""
    named = [p for p, _ in found.backward_floats if names_parameter(p, path)
             and p not in found.params.values()]
    return named[0] if len(named) == 1 else None


def _unnamed(found, path):
    """The clause of a warning on ``path`` for the arrays backward wrote of its shape that
    no name ties to it (:attr:`~gradcheck.protocol.discovery.Discovery.unnamed`), or
    ``""``."""
    arrays = found.unnamed.get(path)
    if not arrays:
        return ""
    one = len(arrays) == 1
    owner = f"{path}'" if path.endswith("s") else f"{path}'s"  # weights', W's
    return (f" backward wrote {', '.join(arrays)} of {owner} shape (no name ties "
            f"{'it' if one else 'them'} to {path}): if {'it' if one else 'one'} is {owner} "
            f"gradient, name it: params={{{path!r}: '<name>'}}.")


def _ambiguous(found, path, written, rivals):
    """The failing finding of a parameter without a gradient by name for which backward
    wrote several arrays of its shape naming it (or one naming others too: ``rivals``;
    :func:`~gradcheck.protocol.discovery.pair_by_shape`): never a silent PASS on the input
    alone. The advice lists the candidates and names none of them."""
    shape = found.shapes.get(path)
    also = (f"; {' and '.join(written)} name{'s' if len(written) == 1 else ''} "
            f"{', '.join(rivals)} too" if rivals else "")
    return (f"{path} ({shape}) has no gradient under the names looked for "
            f"({said_names(grad_candidates(path))}), and backward wrote "
            f"{', '.join(written)} of its shape, named like it{also}: which one is its "
            f"gradient cannot be told, so it was NOT checked and the check cannot pass. "
            f"Name it {grad_candidates(path)[0]}, or pass params={{{path!r}: "
            f"'<its gradient: one of {', '.join(written)}>', ...}} (or params= without it "
            "if it is not trainable)")


def _no_grad(found, path):
    grad = _guess_grad(found, path)
    seen = f"; backward writes {grad}" if grad is not None else ""
    return (f"{path} is a floating array the layer holds, but no gradient was found for it "
            f"(looked for {said_names(grad_candidates(path))}){seen}: it was NOT checked. If "
            f"it is trainable, name it: params={{{path!r}: "
            f"{(grad or '<attribute holding its gradient>')!r}, ...}}{_unnamed(found, path)}")


def _unset(found, path, grad):
    """What a gradient attribute left ``None`` by ``backward`` means."""
    written = _guess_grad(found, path)
    seen = (f"; backward writes {written} instead (a typo?): params={{{path!r}: "
            f"{written!r}}} checks it" if written is not None else "")
    return (f"{grad} is None after backward: {path} has a gradient attribute that backward "
            f"never set, so {path}'s gradient is not computed{seen}. If {path} is not "
            "trainable, name the parameters to check with params= (without it)")


def _no_params(found):
    names = ", ".join(found.floating[:6]) + (", ..." if len(found.floating) > 6 else "")
    first = found.floating[0]
    grad = _guess_grad(found, first) or "<attribute holding its gradient>"
    return (f"the layer holds floating arrays ({names}) but no parameter gradient was found "
            f"for them (looked for {said_names(grad_candidates(first))}, params/grads, "
            f"parameters/gradients); only the input was checked. If they are trainable, name "
            f"them: params={{{first!r}: {grad!r}}}."
            + "".join(_unnamed(found, p) for p in found.floating))


def _checked_names(layer, name, params, wrt, call):
    """``params`` validated, and every ``wrt`` name a target; an error in the user's names
    (``call``, the wrapper of several inputs, knows them by internal ones)."""
    try:
        if params is not None:
            params = check_params_mapping(layer, params)
        _check_wrt(layer, name, wrt, params, call)
    except GradCheckInputError as exc:
        renamed = call.renamed(exc) if call is not None else exc
        if renamed is exc:
            raise
        raise renamed from None
    return params


def _check_wrt(layer, name, wrt, params, call=None):
    """Every ``wrt`` name is the input or a parameter (``call``: the wrapper of a layer with
    several inputs; its internal names are the user's again in :meth:`CallLayer.renamed`)."""
    inputs = ["x", *call.input_params()] if call is not None else ["x"]
    for w in wrt or ():
        ok = w == "x" or (w in params if params is not None
                          else isinstance(get_attr(layer, w), (np.ndarray, float)))
        if not ok:
            what = f"an input ({', '.join(map(repr, inputs))})" if len(inputs) > 1 else "'x'"
            raise GradCheckInputError(
                f"wrt names {w!r}, which is neither {what} nor an ndarray parameter of the "
                "layer", layer=name, target=w)


def _untouched_accumulators(problem, adapter):
    """An accumulating buffer (``gradients[...] +=``) is zeroed before every backward, so
    one that stays zero was never written (stale) -- or the gradient is zero: say so, the
    comparison then decides (a stale one FAILs against a nonzero numerical gradient)."""
    for p, g in problem.params.items():
        if g in adapter.accumulating and not np.any(problem.analytic.get(p, 1.0)):
            problem.findings.append(Finding(
                "accumulator-untouched", False,
                f"backward left {g} at zero after the check zeroed it (as flush_gradients() "
                "does): it never adds into it (stale), or the gradient is zero here", p))


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


#: Failing findings after which forward is no function of x and the parameters alone.
_NOT_A_FUNCTION = {"forward-nondeterministic": "forward is not deterministic",
                   "forward-modifies-parameter": "forward modifies a parameter in place"}


def _not_a_function(findings, results, start):
    """With forward no function of its input and parameters (a failing finding says why),
    its finite differences measure nothing: every target is INCONCLUSIVE for that reason,
    and what the numerical check said after ``start`` about steps and vacuous gradients
    (artefacts: a step shrunk to 1e-18 by "noise", "x + h == x") is dropped."""
    from dataclasses import replace

    why = next((_NOT_A_FUNCTION[f.kind] for f in findings
                if f.failure and f.kind in _NOT_A_FUNCTION), None)
    if why is None:
        return results
    findings[start:] = [f for f in findings[start:]
                        if f.kind not in ("step-underflow", "inconclusive")]
    return tuple(replace(r, verdict="INCONCLUSIVE", inconclusive=(
        f"not judged: {why} (see that finding), so its finite differences measure "
        "nothing")) for r in results)


def _scalar_output_note(problem):
    """A scalar output (a loss) is checked with ``dout = 1``; when its backward ignores dout
    (the book's ``SoftmaxWithLoss``: right for a terminal loss only), a note says so; when
    it uses dout otherwise than linearly (``g * dout**2``: right at ``dout = 1`` only), a
    ``backward-nonlinear`` failure, from one more forward/backward at ``2 * dout`` (the
    sequence check's scale, exact in every precision; at this check's state, so also
    with ``sequence=False`` or a ``dout`` of the caller's)."""
    from gradcheck.protocol.history import LINEARITY, NONDETERMINISTIC, nonlinear_finding

    if problem.out0.size != 1 or any(f.failure and f.kind in NONDETERMINISTIC
                                     for f in problem.findings):
        return
    problem.analytic_noise()  # measured once per check (the strategies' too): ignores_dout
    if problem.ignores_dout:
        if getattr(problem, "scalar_dout", False):
            problem.findings.append(Finding(
                "scalar-output", False,
                "forward returns a scalar (a loss) and backward ignores dout: checked with "
                "dout = 1, the upstream gradient of a terminal loss, the only place where "
                "that is right"))
        return
    scaled = problem.vjp(LINEARITY * problem.dout.astype(np.float64))
    for name, b in scaled.items():
        finding = nonlinear_finding(problem, name, problem.analytic[name], b, LINEARITY,
                                    problem.out0.dtype)
        if finding is not None:
            problem.findings.append(finding)


def run_strategy(problem, strategy, opts):
    """One :class:`~gradcheck.report.TargetResult` per target of ``problem``."""
    from gradcheck.engine import strategies

    return strategies.run(problem, strategy, opts)


def _check_size(name, strategy, x, layer):
    if strategy != "jacobian":
        return
    n = x.size + sum(v.size for v in vars(layer).values() if floating_array(v)) \
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
