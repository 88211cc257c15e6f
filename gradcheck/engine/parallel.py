"""Parallel evaluation of central differences over chunks of a target's elements.

Each worker gets a pickled copy of the layer, the input and ``dout`` (as the
layer was before the check), rebuilds the per-call state restore and
differentiates its chunk; the chunks' results are concatenated in order, so
the result is bit-identical to a serial run. ``n_jobs`` uses a local
``ProcessPoolExecutor``; ``executor=`` takes any
``concurrent.futures.Executor`` -- a ``dask.distributed`` client's
``get_executor()`` runs the same chunks on a cluster.
"""

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gradcheck.engine import perturb as _numdiff
from gradcheck.protocol.state import dumps_shared


def _chunk_worker(payload, idx):
    from gradcheck.protocol.adapter import LayerAdapter, get_attr
    from gradcheck.protocol.problem import make_evaluator
    from gradcheck.protocol.state import StateSnapshot

    # every task differentiates its own copy, whatever the executor shares
    layer, xw, fresh_x, train_flg, dout, target, steps, multipliers = pickle.loads(payload)
    adapter = LayerAdapter(layer, train_flg)
    snapshot = StateSnapshot(layer)
    out0 = adapter.forward(xw.copy())
    dirty = snapshot.changed()
    snapshot.restore_all()
    arr = xw if target == "x" else get_attr(layer, target)
    evaluate = make_evaluator(adapter, xw, fresh_x, dirty, target, arr, out0.shape)
    return _numdiff.central_differences(evaluate, arr, dout, idx, steps, multipliers)


def parallel_differences(run, target, u, idx, steps, multipliers):
    """Central differences of ``idx`` split over ``run.opts.executor`` or ``n_jobs`` processes."""
    opts = run.opts
    workers = opts.n_jobs or 2
    chunks = [c for c in np.array_split(np.asarray(idx), max(1, workers * 4)) if len(c)]
    run.snapshot.restore_all()
    try:
        payload = dumps_shared((run.layer, run.xw, run.fresh_x, run.adapter.train_flg, u,
                                target, steps, multipliers))
    except Exception as exc:
        from gradcheck.errors import GradCheckInputError
        raise GradCheckInputError(
            f"n_jobs/executor need a picklable layer: {type(exc).__name__}: {exc}",
            layer=run.name, target=target) from exc
    own = opts.executor is None
    executor = ProcessPoolExecutor(workers) if own else opts.executor
    try:
        futures = [executor.submit(_chunk_worker, payload, c) for c in chunks]
        parts = [f.result() for f in futures]
    finally:
        if own:
            executor.shutdown()
    run.adapter.forward_calls += 2 * len(multipliers) * len(idx)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
