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
ns/output = one bare forward call over the elements of its output: the
         toolkit's per-call work is a few passes over the output, so the
         ratio is set by how much work the layer does per output element;
own    = (check - limit) / n, the toolkit's own time per element on top of
         the bare calls (reductions, state restores, noise table, tuning,
         refinement, verdict);
share  = (check - time inside forward) / time inside forward, with the
         forward calls timed as they ran inside the check (a timer around the
         layer's forward): the toolkit's own work against the calls it made, in
         the same instants, so a machine whose speed drifts between the bare
         loop and the check moves it less than the ratio (it leaves out what
         the check's own passes cost the layer's forward in cache);
accuracy = max |numerical - exact| / max(|exact|), with the analytic gradient
of the (correct) layer as the exact one.
"""

import functools
import os
import time

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.suite import make_affine, make_batchnorm, make_convolution

#: Interleaved rounds (best of).
ROUNDS = 3

CALLS = {"forward": 1, "central": 2, "central4": 4, "richardson": 6}


def bare_forward_time(layer, x, kw, repeat=200):
    """Best over 3 loops of ``repeat`` bare ``layer.forward(x, **kw)`` calls, per call."""
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            layer.forward(x, **kw)
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def measure(kind, shape, make, method="central", rounds=ROUNDS):
    """Interleaved best-of timings of the bare forward and the check; a dict for the table.

    ``make(rng) -> (layer, x, kw)``: the layer, its input and forward's keywords.
    """
    layer, x, kw = make(np.random.default_rng(0))
    t_fwd, t_check, share = np.inf, np.inf, np.inf
    for k in range(rounds + 1):  # the last round with the forward timed (its own cost apart)
        t_fwd = min(t_fwd, bare_forward_time(layer, x, kw))
        inside = [0.0]
        with _timed_forward(type(layer), inside, on=k == rounds):
            t0 = time.perf_counter()
            report = check_layer(layer, x, wrt=["x"], method=method, strategy="elementwise",
                                 sequence=False, **kw)
            t = time.perf_counter() - t0
        if k < rounds:
            t_check = min(t_check, t)
        else:
            share = (t - inside[0]) / inside[0]
    t_fwd = min(t_fwd, bare_forward_time(layer, x, kw))
    r = report.result("x")
    n = x.size
    limit = CALLS[method] * n * t_fwd
    return dict(layer=kind, shape=shape, method=method, fwd_us=t_fwd * 1e6, limit=limit,
                check=t_check, ratio=t_check / limit, share=share, own_us=(t_check - limit) / n * 1e6,
                out_ns=t_fwd / np.asarray(layer.forward(x, **kw)).size * 1e9,
                accuracy=r.max_abs_error / np.max(np.abs(r.analytic)), passed=report.passed)


class _timed_forward:
    """Within the block, ``cls.forward`` adds the seconds of every call to ``total[0]`` (if ``on``)."""

    def __init__(self, cls, total, on=True):
        self.cls, self.total, self.original, self.on = cls, total, cls.forward, on

    def __enter__(self):
        original, total = self.original, self.total
        if not self.on:
            return

        @functools.wraps(original)  # the same signature: the check calls it the same way
        def forward(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                total[0] += time.perf_counter() - t0

        self.cls.forward = forward

    def __exit__(self, *exc):
        self.cls.forward = self.original


def _bn(shape):
    return lambda rng: (*make_batchnorm(shape, rng, True), {"train_flg": True})


def _affine(shape, out_features):
    return lambda rng: (*make_affine(shape, rng, out_features=out_features), {})


def _conv(shape, filters):
    return lambda rng: (*make_convolution(shape, rng, filters=filters), {})


#: (layer, shape shown, make, method)
CASES = [("BatchNorm", (32, 64), _bn((32, 64)), "central"),
         ("BatchNorm", (64, 256), _bn((64, 256)), "central"),
         ("BatchNorm", (64, 256), _bn((64, 256)), "richardson"),
         ("BatchNorm", (4, 3, 5, 5), _bn((4, 3, 5, 5)), "central"),
         ("BatchNorm", (16, 8, 8, 8), _bn((16, 8, 8, 8)), "central"),
         ("Affine", (16, 64, 512), _affine((16, 64), 512), "central"),
         ("Affine", (64, 256, 128), _affine((64, 256), 128), "central"),
         ("Conv 8x3x3", (4, 3, 12, 12), _conv((4, 3, 12, 12), 8), "central")]


def main():
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; best of {ROUNDS} "
          "interleaved rounds")
    print(f"{'layer':>10} {'shape':>14} {'method':>10} {'forward µs':>10} {'ns/output':>9} "
          f"{'limit s':>8} "
          f"{'check s':>8} {'ratio':>6} {'share':>6} {'own µs/el':>9} {'accuracy':>9} verdict")
    for kind, shape, make, method in CASES:
        m = measure(kind, shape, make, method)
        print(f"{kind:>10} {str(shape):>14} {method:>10} {m['fwd_us']:>10.1f} "
              f"{m['out_ns']:>9.1f} "
              f"{m['limit']:>8.3f} {m['check']:>8.3f} {m['ratio']:>6.2f} {m['share']:>6.1%} "
              f"{m['own_us']:>9.1f} "
              f"{m['accuracy']:>9.1e} {'PASS' if m['passed'] else 'FAIL'}", flush=True)


if __name__ == "__main__":
    main()
