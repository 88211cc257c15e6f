"""Cost and accuracy of the elementwise check, against the black-box limit, in one run.

    python benchmarks/bench_engine.py

For each layer and method, the bare forward call and ``check_layer(layer, x,
wrt=["x"], strategy="elementwise", sequence=False)`` are timed interleaved in
this process (bare, check, bare, ... ; best of ``ROUNDS`` each, so that a
load from another process on the cores hits both alike), and printed side by
side:

limit  = calls x one bare forward call (calls = 2n for central differences,
         6n for Richardson; n = elements of x): what any black-box check of
         one element at a time costs at least;
check  = time of the whole ``check_layer`` call;
ratio  = check / limit (1.0 is the limit);
own    = (check - limit) / n, the toolkit's own time per element on top of
         the bare calls (reductions, state restores, noise table, tuning,
         refinement, verdict);
accuracy = max |numerical - exact| / max(|exact|), with the analytic gradient
of the (correct) layer as the exact one.
"""

import os
import time

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.suite import make_batchnorm

#: Interleaved rounds (best of).
ROUNDS = 3

CALLS = {"forward": 1, "central": 2, "central4": 4, "richardson": 6}


def make_affine(shape, rng):
    """An :class:`layers.affine.Affine` of ``shape = (N, D, M)`` and an input ``(N, D)``."""
    from layers.affine import Affine

    N, D, M = shape
    layer = Affine(rng.normal(size=(D, M)) / np.sqrt(D), rng.normal(size=M))
    return layer, rng.normal(size=(N, D))


def bare_forward_time(layer, x, args, repeat=200):
    """Best over 3 loops of ``repeat`` bare ``layer.forward(x, *args)`` calls, per call."""
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            layer.forward(x, *args)
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def measure(kind, shape, method="central", rounds=ROUNDS):
    """Interleaved best-of timings of the bare forward and the check; a dict for the table."""
    rng = np.random.default_rng(0)
    if kind == "BatchNorm":
        (layer, x), args, kw = make_batchnorm(shape, rng, True), (True,), {"train_flg": True}
    else:
        (layer, x), args, kw = make_affine(shape, rng), (), {}
    t_fwd, t_check = np.inf, np.inf
    for _ in range(rounds):
        t_fwd = min(t_fwd, bare_forward_time(layer, x, args))
        t0 = time.perf_counter()
        report = check_layer(layer, x, wrt=["x"], method=method, strategy="elementwise",
                             sequence=False, **kw)
        t_check = min(t_check, time.perf_counter() - t0)
    t_fwd = min(t_fwd, bare_forward_time(layer, x, args))
    r = report.result("x")
    n = x.size
    limit = CALLS[method] * n * t_fwd
    return dict(layer=kind, shape=shape, method=method, fwd_us=t_fwd * 1e6, limit=limit,
                check=t_check, ratio=t_check / limit, own_us=(t_check - limit) / n * 1e6,
                accuracy=r.max_abs_error / np.max(np.abs(r.analytic)), passed=report.passed)


CASES = [("BatchNorm", (32, 64), "central"), ("BatchNorm", (64, 256), "central"),
         ("BatchNorm", (64, 256), "richardson"), ("BatchNorm", (4, 3, 5, 5), "central"),
         ("BatchNorm", (16, 8, 8, 8), "central"), ("Affine", (16, 64, 512), "central")]


def main():
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; best of {ROUNDS} "
          "interleaved rounds")
    print(f"{'layer':>9} {'shape':>14} {'method':>10} {'forward µs':>10} {'limit s':>8} "
          f"{'check s':>8} {'ratio':>6} {'own µs/el':>9} {'accuracy':>9} verdict")
    for kind, shape, method in CASES:
        m = measure(kind, shape, method)
        print(f"{kind:>9} {str(shape):>14} {method:>10} {m['fwd_us']:>10.1f} "
              f"{m['limit']:>8.3f} {m['check']:>8.3f} {m['ratio']:>6.2f} {m['own_us']:>9.1f} "
              f"{m['accuracy']:>9.1e} {'PASS' if m['passed'] else 'FAIL'}", flush=True)


if __name__ == "__main__":
    main()
