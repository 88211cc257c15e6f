"""Parallel evaluation of a target's element differences over chunks.

Each worker gets a pickled copy of the layer, the input and ``dout`` (as the
layer was before the check), rebuilds the per-call state restore and runs
the one perturbation loop (:func:`gradcheck.engine.perturb.differences`) on
its chunk; the chunks' results are concatenated in order, so the result is
bit-identical to a serial run. ``n_jobs`` uses a local
``ProcessPoolExecutor``; ``executor=`` takes any
``concurrent.futures.Executor`` -- a ``dask.distributed`` client's
``get_executor()`` runs the same chunks on a cluster.
"""

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.protocol.state import dumps_shared

__all__ = ["parallel_differences"]


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
    try:
        futures = [executor.submit(_chunk_worker, payload, c) for c in chunks]
        parts = [f.result() for f in futures]
    finally:
        if own:
            executor.shutdown()
    problem.adapter.forward_calls += setup.method.calls * len(idx) + len(chunks)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
