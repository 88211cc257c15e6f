"""The detection table: the smallest single-element error each check catches.

    pip install -e '.[examples]' torch==2.13.0 && python benchmarks/bench_detection.py

For each layer, input scale and method/strategy, a wrong backward is made by
adding ``r * max|dx|`` to one element of the true ``dx`` (a fixed element,
chosen at random once per layer; the error is linear in ``dout``); ``r`` is searched on a grid of half decades
from 1e-14 to 1 for the smallest value whose check FAILs (INCONCLUSIVE and
PASS are both "not caught"). A cell reads ``1e-08 (stated 3e-09)``: caught at
1e-8 and above, with the relative resolution our report stated for the
correct layer beside it (both relative to ``max|dx|``; the grid is half
decades, so a stated value up to 3x below the caught one is the grid's
rounding, not a broken promise); ``false FAIL`` means the correct layer already
failed, ``inconclusive`` that the check said it could not decide, ``n/a`` that
the method does not apply (complex step on a layer that is not
complex-analytic).

Layers: Affine ``(8, 12) -> 6``, seed-style BatchNormalization ``(8, 12)`` and
``(4, 2, 3, 3)`` (train mode), Convolution ``(2, 2, 6, 6)`` with three 3x3
filters, SoftmaxWithLoss ``(8, 5)``; input scales 1, 1e4 and 1e8 (``x`` times
the scale, parameters unchanged), and a *float32 twin* at scale 1: the same
layer with float32 parameters, its forward casting ``x`` to float32 and its
output back to float64 -- the check sees float64 in and out.

torch.autograd.gradcheck runs on the same scalar ``L = sum(forward(x) * dout)``
(the numpy layer inside a ``torch.autograd.Function``), with its defaults
(``eps=1e-6, atol=1e-5, rtol=1e-3``), slow and fast mode, in the same run.
"""

import copy
import functools
import time

import warnings

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.suite import (make_affine, make_batchnorm, make_convolution,
                                  make_softmax_loss)
from gradcheck.testing.inject import wrong_element

#: Relative errors tried: half decades from 1e-14 to 1.
GRID = 10.0 ** np.arange(-14.0, 0.01, 0.5)

LAYERS = {
    "Affine (8, 12) -> 6": lambda rng: make_affine((8, 12), rng, out_features=6),
    "BatchNorm 2D (8, 12)": lambda rng: make_batchnorm((8, 12), rng),
    "BatchNorm 4D (4, 2, 3, 3)": lambda rng: make_batchnorm((4, 2, 3, 3), rng),
    "Convolution (2, 2, 6, 6), 3x3x3": lambda rng: make_convolution((2, 2, 6, 6), rng),
    "SoftmaxWithLoss (8, 5)": lambda rng: make_softmax_loss((8, 5), rng),
}

OURS = [("central", "elementwise"), ("forward", "elementwise"), ("central4", "elementwise"),
        ("richardson", "elementwise"), ("complex", "elementwise"), ("central", "jacobian"),
        ("central", "projection")]

VARIANTS = ["1", "1e4", "1e8", "float32 twin"]


def _float32_twin(layer):
    """A copy of ``layer`` that computes in float32 and answers in float64."""
    base = type(layer)

    @functools.wraps(base.forward)  # the same signature: train_flg passed only if accepted
    def forward(self, x, *args, **kwargs):
        return np.asarray(base.forward(self, np.asarray(x, np.float32), *args, **kwargs),
                          dtype=np.float64)

    @functools.wraps(base.backward)
    def backward(self, dout=1.0):
        return np.asarray(base.backward(self, np.asarray(dout, np.float32)), dtype=np.float64)

    twin = copy.deepcopy(layer)
    for name, value in vars(twin).items():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            setattr(twin, name, value.astype(np.float32))
    twin.__class__ = type(f"Float32{base.__name__}", (base,),
                          {"forward": forward, "backward": backward})
    return twin


def _case(name, variant):
    """``(layer, x, dout)`` for one row of the table."""
    rng = np.random.default_rng(0)
    layer, x = LAYERS[name](rng)
    if variant == "float32 twin":
        layer = _float32_twin(layer)
    else:
        x = x * float(variant)
    out = np.asarray(layer.forward(x))
    dout = np.asarray(rng.standard_normal(out.shape)) if out.ndim else np.asarray(1.0)
    return layer, x, dout


def _true_dx(layer, x, dout):
    fresh = copy.deepcopy(layer)
    fresh.forward(x)
    return np.asarray(fresh.backward(dout), dtype=np.float64)


def _smallest_caught(fails):
    """Smallest ``r`` of :data:`GRID` with ``fails(r)``, by bisection (monotone in ``r``)."""
    if not fails(GRID[-1]):
        return None
    lo, hi = -1, len(GRID) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(GRID[mid]):
            hi = mid
        else:
            lo = mid
    return GRID[hi]


def _ours(layer, x, dout, method, strategy, k, scale):
    def verdict(lay):
        with warnings.catch_warnings():  # the float32 twin drops a complex step's imaginary part
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            rep = check_layer(lay, x, dout=dout, wrt=["x"], method=method, strategy=strategy,
                              sequence=False)
        return rep.result("x"), rep.forward_calls

    try:
        base, calls = verdict(layer)
    except Exception as exc:  # complex step on a layer that is not complex-analytic
        return f"n/a ({type(exc).__name__})", 0
    if base.verdict == "FAIL":
        return "false FAIL", calls
    if base.verdict != "PASS":
        return base.verdict.lower(), calls
    r = _smallest_caught(lambda r: verdict(wrong_element(layer, k, r * scale, dout))[0].verdict == "FAIL")
    caught = f"{r:.0e}" if r is not None else "> 1"
    return f"{caught} (stated {base.relative_resolution:.0e})", calls


def _torch(layer, x, dout, fast, k, scale):
    import torch

    def fails(delta):
        lay = wrong_element(layer, k, delta, dout) if delta else layer

        class Loss(torch.autograd.Function):
            @staticmethod
            def forward(ctx, xt):
                ctx.save_for_backward(xt)
                out = np.asarray(lay.forward(xt.detach().numpy()))
                return torch.tensor(float(np.sum(out * dout)), dtype=torch.float64)

            @staticmethod
            def backward(ctx, g):
                (xt,) = ctx.saved_tensors
                lay.forward(xt.detach().numpy())
                return g * torch.from_numpy(np.asarray(lay.backward(dout), np.float64))

        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        return not torch.autograd.gradcheck(Loss.apply, (xt,), fast_mode=fast,
                                            raise_exception=False)

    calls = 2 * x.size + 1 if not fast else 3
    if fails(0.0):
        return "false FAIL", calls
    r = _smallest_caught(lambda r: fails(r * scale))
    return (f"{r:.0e}" if r is not None else "> 1"), calls


def _row(name, variant, columns, with_torch):
    layer, x, dout = _case(name, variant)
    dx = _true_dx(layer, x, dout)
    k = int(np.random.default_rng(1).integers(x.size))
    scale = float(np.max(np.abs(dx)))
    cells = []
    for method, strategy in columns:
        cell, calls = _ours(layer, x, dout, method, strategy, k, scale)
        cells.append(f"{cell}, {calls}")
    if with_torch:
        for fast in (False, True):
            cell, calls = _torch(layer, x, dout, fast, k, scale)
            cells.append(f"{cell}, {calls}")
    return cells


def main(layers=None, variants=None):
    """Print the detection table (markdown) for ``layers`` x ``variants`` (all by default)."""
    import importlib.util

    with_torch = importlib.util.find_spec("torch") is not None
    if with_torch:
        import torch
        torch.set_num_threads(1)
    heads = [f"{m} {s}" if s != "elementwise" else m for m, s in OURS]
    heads += ["torch slow", "torch fast"] if with_torch else []
    print("Smallest single-element relative error caught, then forward calls of the check.\n")
    print("| layer | scale | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(heads))
    t0 = time.perf_counter()
    for name in layers or LAYERS:
        for variant in variants or VARIANTS:
            cells = _row(name, variant, OURS, with_torch)
            print(f"| {name} | {variant} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s; torch "
          f"{'included' if with_torch else 'not installed: pip install torch==2.13.0'})")


if __name__ == "__main__":
    main()
