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
tells that convention apart with one directional difference per target, and
only in the course's layout: exactly three floating inputs ``A`` (the first,
``(n_prev, m)``), ``W`` ``(n, n_prev)`` and ``b`` ``(n, 1)`` (a column, where
CS231n's ``b`` is ``(M,)``) and an output ``(n, m)``; ``A``'s gradient at
ratio 1 and one of ``W``'s, ``b``'s at ``1/m``. Only ``W`` and ``b`` are ever
scaled, told by their shapes (not their names). Anything else is checked as it
is: a CS231n ``affine_backward`` that averages over the rows of a square ``x``,
a product ``A * B`` whose ``dB`` is divided by ``m``, a course pair whose
``dA_prev`` is averaged too all FAIL. The check then compares ``m`` times
``W``'s and ``b``'s gradients, and the report says so.
"""

import numpy as np

__all__ = ["find_mean_scale", "mean_scale_note", "unscaled_mean_note"]

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


def _course_layout(call, out):
    """Whether the pair's inputs and output are deeplearning.ai's ``Z = W @ A + b``.

    Parameters
    ----------
    call : gradcheck.protocol.calling.CallLayer
    out : array_like
        The pair's output at ``call.x``.

    Returns
    -------
    bool
        True for exactly three floating inputs: the first ``A`` of shape ``(n_prev, m)``,
        ``m > 1``; the other two ``W`` ``(n, n_prev)`` and ``b`` ``(n, 1)`` in either order
        (the only ones the check may scale); and an output ``(n, m)``. A CS231n ``(N, D)``
        affine pair never is: its ``b`` is ``(M,)`` or ``(1, M)``, its ``w`` ``(D, M)``.
    """
    if len(call.targets) != 3 or np.ndim(call.x) != 2 or np.ndim(out) != 2:
        return False
    n_prev, m = np.shape(call.x)
    n = np.shape(out)[0]
    if m < 2 or np.shape(out) != (n, m):
        return False
    shapes = sorted(np.shape(call.inputs[name]) for name in call.targets[1:])
    return shapes == sorted([(n, n_prev), (n, 1)])


def find_mean_scale(call, train_flg, seed):
    """``m`` when a function pair is the course's ``Z = W @ A + b`` with ``dW``, ``db`` of
    the batch mean.

    Parameters
    ----------
    call : gradcheck.protocol.calling.CallLayer
        Around a :class:`~gradcheck.protocol.calling.FunctionPair`.
    train_flg : bool
    seed : int

    Returns
    -------
    int or None
        The number of columns ``m`` of ``A`` when the pair is in the course's layout (see
        :func:`_course_layout`), ``A``'s gradient is at ratio 1 of its directional
        derivative and ``W``'s or ``b``'s at ``1/m`` (one is enough: a pair whose ``db``
        alone is wrong still FAILs on ``b`` alone); else ``None`` (also when the pair
        raises: the check's own calls report it), and the pair is checked as it is.
        Counted in ``call.step_calls``.
    """
    from gradcheck.protocol.problem import default_dout
    from gradcheck.protocol.state import StateSnapshot

    if len(call.targets) != 3 or np.ndim(call.x) != 2 or np.shape(call.x)[1] < 2:
        return None
    m = np.shape(call.x)[1]
    rng = np.random.default_rng([seed, 29])
    snapshot = StateSnapshot(call)
    made = [0, 0]
    try:
        out = call.forward(call.x.copy(), train_flg)
        made[0] += 1
        if not _course_layout(call, out):
            return None
        dout = default_dout(seed, np.shape(out))
        grads = call._by_target(list(call._call_backward(call.split(dout))))
        made[1] += 1
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
    found = tuple(n for n, r in zip(call.targets[1:], ratios[1:]) if abs(r * m - 1) <= RATIO_TOL)
    call.mean_found = found  # named by the note: the others are checked so too
    if abs(ratios[0] - 1) <= RATIO_TOL and found:
        return m
    return None


def unscaled_mean_note(call):
    """The note for a course-layout pair whose parameter gradients are exactly 1/m of the
    sum's while its first input's gradient is not the sum's either (a wrong ``dA_prev``):
    the pair was checked as it is, so those FAIL too, and the note says they may be right."""
    found = getattr(call, "mean_found", ())
    if not found:
        return None
    first = call.targets[0]
    m = np.shape(call.x)[1]
    which = ", ".join(found)
    return (f"{which}: exactly 1/m of the gradient of sum(out * dout) (m = {m}, the course's "
            f"batch mean), but {first}'s gradient is not that of the sum, so nothing was "
            f"scaled: {which} FAIL by exactly 1/m and may be right; fix {first}'s first")


def mean_scale_note(call, m):
    """The report's note for a pair checked with its parameter gradients times ``m``."""
    first, rest = call.targets[0], ", ".join(call.targets[1:])
    found = getattr(call, "mean_found", None) or tuple(call.targets[1:])
    which = (f"the gradients of {', '.join(found)} are" if len(found) > 1
             else f"the gradient of {found[0]} is")
    return (f"{which} 1/m of the gradient of sum(out * dout) (m = {m}, "
            f"the columns of {first}: the batch mean, as deeplearning.ai's linear_backward "
            f"writes dW = 1./m * dZ @ A_prev.T), while {first}'s is of the sum: {rest} "
            f"checked as m times their gradients; a backward meant to return the gradients "
            "of the sum has an extra 1/m there")
