"""Parameter gradients of the batch mean beside an input gradient of the sum.

deeplearning.ai's (Coursera) function pairs keep the examples in the columns
of ``A`` (``(n_prev, m)``) and write ``linear_backward(dZ, cache)`` as

    dW = 1./m * np.dot(dZ, A_prev.T)
    db = 1./m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)

The parameter gradients are those of the cost ``J = (1/m) sum L``, the input
gradient is that of ``sum L`` (the next layer down averages again): as a
pair, ``dW`` and ``db`` are exactly ``1/m`` of the gradient of ``sum(Z *
dZ)`` and a correct course solution would FAIL on both. :func:`find_mean_scale`
tells that convention apart with one directional difference per target: an
input after the first whose gradient is ``1/m`` of it, ``m`` the number of
columns of the first input (the course's layout only: a
``1/N`` over the rows of a CS231n input ``(N, D)`` is not taken, so a CS231n
``affine_backward`` that averages still FAILs). The check then compares ``m``
times those gradients, and the report says so.
"""

import numpy as np

__all__ = ["find_mean_scale", "mean_scale_note"]

#: How close the ratio of analytic to numerical directional derivative must be to 1 (the
#: first input) and to ``1/m`` (the others): far above a central difference's error on a
#: smooth pair, far below the gap between 1 and 1/2.
RATIO_TOL = 1e-4


def _directional(call, name, dout, train_flg, rng):
    """``(analytic, numerical)`` derivative of ``sum(out * dout)`` along a random direction
    of the target ``name`` (the first floating input is ``call.x``; the others are
    perturbed in place in ``call.inputs`` and put back)."""
    first = name == call.targets[0]
    base = call.x if first else call.inputs[name]
    v = rng.normal(size=base.shape)
    h = 1e-6 * max(1.0, float(np.max(np.abs(base))))
    values = []
    for step in (h, -h):
        moved = base + step * v
        if first:
            out = call.forward(moved, train_flg)
        else:
            saved = base.copy()
            base[...] = moved
            try:
                out = call.forward(call.x.copy(), train_flg)
            finally:
                base[...] = saved
        values.append(float(np.sum(np.asarray(out) * dout)))
    return v, (values[0] - values[1]) / (2 * h)


def find_mean_scale(call, train_flg, seed):
    """``m`` when a function pair's parameter gradients are those of the batch mean.

    Parameters
    ----------
    call : gradcheck.protocol.calling.CallLayer
        Around a :class:`~gradcheck.protocol.calling.FunctionPair` with two or more
        floating inputs, the first one 2-D (examples in its columns).
    train_flg : bool
    seed : int

    Returns
    -------
    int or None
        The number of columns ``m > 1`` of the first input when an input after the
        first has a gradient of ``1/m`` of its directional derivative (one is enough: a
        pair whose ``db`` alone is wrong still FAILs on ``b`` alone, and on the first
        input alone when ``dA_prev`` is); else ``None`` (also when the pair raises: the
        check's own calls report it). Counted in ``call.step_calls``.
    """
    from gradcheck.protocol.problem import default_dout
    from gradcheck.protocol.state import StateSnapshot

    if len(call.targets) < 2 or np.ndim(call.x) != 2 or np.shape(call.x)[1] < 2:
        return None
    m = np.shape(call.x)[1]
    rng = np.random.default_rng([seed, 29])
    snapshot = StateSnapshot(call)
    made = [0, 0]
    try:
        out = call.forward(call.x.copy(), train_flg)
        dout = default_dout(seed, np.shape(out))
        grads = call._by_target(list(call._call_backward(call.split(dout))))
        made = [1, 1]
        ratios = []
        for name in call.targets:
            v, numerical = _directional(call, name, dout, train_flg, rng)
            made[0] += 2
            if numerical == 0:
                return None
            ratios.append(float(np.sum(np.asarray(grads[name]) * v)) / numerical)
    except Exception:  # noqa: BLE001 -- the check's own calls report it
        return None
    finally:
        snapshot.restore_all()
        call.step_calls = (call.step_calls[0] + made[0], call.step_calls[1] + made[1])
    if any(abs(r * m - 1) <= RATIO_TOL for r in ratios[1:]):
        return m
    return None


def mean_scale_note(call, m):
    """The report's note for a pair checked with its parameter gradients times ``m``."""
    first, rest = call.targets[0], ", ".join(call.targets[1:])
    return (f"the gradients of {rest} are 1/m of the gradient of sum(out * dout) (m = {m}, "
            f"the columns of {first}: the batch mean, as deeplearning.ai's linear_backward "
            f"writes dW = 1./m * dZ @ A_prev.T), while {first}'s is of the sum: checked as "
            f"m times them; a backward meant to return the gradients of the sum has an "
            "extra 1/m there")
