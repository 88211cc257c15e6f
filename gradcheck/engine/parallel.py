"""Parallel evaluation of a target's element differences over chunks.

Each worker gets a pickled copy of the layer, the input and ``dout`` (as the
layer was before the check), rebuilds the per-call state restore and runs
the one perturbation loop (:func:`gradcheck.engine.perturb.differences`) on
its chunk; the chunks' results are concatenated in order, so the result is
bit-identical to a serial run. ``n_jobs`` uses a local
``ProcessPoolExecutor``; ``executor=`` takes any
``concurrent.futures.Executor`` -- a ``dask.distributed`` client's
``get_executor()`` runs the same chunks on a cluster.

Below its break-even ``n_jobs`` does not pay: starting the worker processes
and shipping the layer cost about :data:`BREAK_EVEN` seconds on the 2-core
development machine (``n_jobs=2`` was slower than serial below ~10 s of
forward calls, ``benchmarks/bench_parallel.py``), so a target whose forward
calls would take less than that serially is evaluated serially and a note
says so (:func:`worth_it`; the serial time is estimated from the noise
table's calls). An ``executor=`` is the caller's own and always used.

Its workers' environment is looked at once per check (:func:`worker_malloc_note`):
``dask.distributed``'s nanny starts worker processes with
``MALLOC_TRIM_THRESHOLD_=65536``, which made one bare forward call of
BatchNormalization (64, 1024) 8.6x slower (1,408 µs against 164 µs in a
fresh process) and a 2-worker ``LocalCluster`` 3.8x slower than serial. The
check never changes a cluster it is given; the note says how to create one
without it.
"""

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.protocol.state import dumps_shared

__all__ = ["parallel_differences", "worth_it", "worker_malloc_note", "BREAK_EVEN"]

#: Seconds of serial forward calls below which ``n_jobs`` worker processes do not pay.
BREAK_EVEN = 10.0


def worth_it(problem, setup, idx):
    """Whether ``n_jobs`` pays for ``idx``'s differences; a note when it does not.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    setup : gradcheck.engine.elementwise.Setup
        Brings ``call_time``, the measured seconds per forward call.
    idx : ndarray of int

    Returns
    -------
    bool
        True with an ``executor=``, or when the serial calls would take at least
        :data:`BREAK_EVEN` seconds.
    """
    opts = setup.opts
    if opts.executor is not None:
        return True
    calls = setup.method.calls * len(idx)
    serial = calls * setup.call_time
    if serial >= BREAK_EVEN:
        return True
    from gradcheck.report import Finding

    problem.findings.append(Finding(
        "parallel-serial", False,
        f"n_jobs={opts.n_jobs}: {setup.target.name!r} was evaluated serially: its {calls} "
        f"forward calls take about {serial:.2g} s ({setup.call_time * 1e6:.0f} µs each, "
        f"measured), below the ~{BREAK_EVEN:g} s of work where worker processes pay for "
        "their start-up and the shipped layer", setup.target.name))
    return False


#: Above this many bytes, glibc's trim threshold no longer slows allocation-heavy calls.
MALLOC_TRIM_OK = 1 << 20


def _malloc_trim_threshold():
    """The worker's ``MALLOC_TRIM_THRESHOLD_`` (runs in the worker)."""
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def worker_malloc_note(problem, executor):
    """A note when ``executor``'s workers run with a small ``MALLOC_TRIM_THRESHOLD_`` (once).

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
        The note goes to its findings; asked once per check.
    executor : concurrent.futures.Executor
        The caller's executor (one tiny task reads a worker's environment).
    """
    if problem.__dict__.get("_malloc_checked"):
        return
    problem._malloc_checked = True
    try:
        value = executor.submit(_malloc_trim_threshold).result(timeout=60)
    except Exception:  # an executor that cannot run the probe: nothing to say
        return
    try:
        small = value is not None and int(value) < MALLOC_TRIM_OK
    except ValueError:
        return
    if small:
        from gradcheck.report import Finding

        problem.findings.append(Finding(
            "executor-environment", False,
            f"the executor's workers run with MALLOC_TRIM_THRESHOLD_={value} in their "
            "environment (dask.distributed's nanny sets 65536): glibc then hands freed memory "
            "back to the OS on every call, which made a forward call 8.6x slower in a "
            "measurement; the check leaves your cluster as it is -- create it under "
            "dask.config.set({'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_': "
            "None}) (or unset the variable) for full speed"))


def _chunk_worker(payload, idx):
    from gradcheck.protocol.adapter import LayerAdapter, get_attr
    from gradcheck.protocol.problem import make_evaluator
    from gradcheck.protocol.state import StateSnapshot

    # every task differentiates its own copy, whatever the executor shares
    (layer, xw, fresh_x, train_flg, dout, target, steps, pairs, weights) = pickle.loads(payload)
    adapter = LayerAdapter(layer, train_flg)
    snapshot = StateSnapshot(layer)
    out0 = np.array(adapter.forward(xw.copy()), copy=True).reshape(-1)
    dirty = snapshot.changed()
    snapshot.restore_all()
    arr = xw if target == "x" else get_attr(layer, target)
    evaluate = make_evaluator(adapter, xw, fresh_x, dirty, target, arr, out0.size)
    sink = Reduce(dout, len(idx), len(pairs), noise_w=weights)
    span = differences(evaluate, ElementMoves(arr, idx, steps), pairs, sink, out0)
    return sink.R.real, span, sink.noise


def parallel_differences(problem, setup, idx):
    """``(R, span, support)`` of the elements ``idx``, split over the executor or ``n_jobs``."""
    opts = setup.opts
    workers = opts.n_jobs or 2
    chunks = [c for c in np.array_split(np.asarray(idx), max(1, workers * 4)) if len(c)]
    problem.snapshot.restore_all()
    try:
        payload = dumps_shared((problem.layer, problem.xw, problem.fresh_x,
                                problem.adapter.train_flg, problem.dout, setup.target.name,
                                setup.steps, setup.method.pairs, setup.noise.weights))
    except Exception as exc:
        from gradcheck.errors import GradCheckInputError
        raise GradCheckInputError(
            f"n_jobs/executor need a picklable layer: {type(exc).__name__}: {exc}",
            layer=problem.name, target=setup.target.name) from exc
    own = opts.executor is None
    executor = ProcessPoolExecutor(workers) if own else opts.executor
    if not own:
        worker_malloc_note(problem, executor)
    try:
        futures = [executor.submit(_chunk_worker, payload, c) for c in chunks]
        parts = [f.result() for f in futures]
    finally:
        if own:
            executor.shutdown()
    problem.adapter.forward_calls += setup.method.calls * len(idx) + len(chunks)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
