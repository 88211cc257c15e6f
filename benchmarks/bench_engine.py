"""Cost and accuracy of check_layer on BatchNormalization, against the black-box limit.

    python benchmarks/bench_engine.py

ratio = time of the numerical part of ``check_layer`` for target x
        / (2n x one bare forward call), measured in the same run;
1.0 is the limit of any black-box central-difference check.
accuracy = max |numerical - exact| / max(|exact|), with the analytic gradient
of the (correct) layer as the exact one.
"""

import time

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.suite import make_batchnorm


def bare_forward_time(layer, x, train_flg, repeat=200):
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            layer.forward(x, train_flg)
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def measure(shape, train_flg=True, method="central"):
    rng = np.random.default_rng(0)
    layer, x = make_batchnorm(shape, rng, train_flg)
    t_fwd = bare_forward_time(layer, x, train_flg)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        report = check_layer(layer, x, train_flg=train_flg, wrt=["x"], method=method,
                             strategy="elementwise")
        best = min(best, time.perf_counter() - t0)
    r = report.result("x")
    n = x.size
    calls = {"forward": 1, "central": 2, "central4": 4, "richardson": 6}[method] * n
    acc = r.max_abs_error / np.max(np.abs(r.analytic))
    return dict(shape=shape, mode="train" if train_flg else "eval", method=method,
                fwd_us=t_fwd * 1e6, ratio=best / (calls * t_fwd), accuracy=acc,
                passed=report.passed)


def main():
    print(f"{'shape':>16} {'mode':>5} {'method':>10} {'forward µs':>11} {'ratio':>6} "
          f"{'accuracy':>9} verdict")
    for shape in [(32, 64), (64, 256), (4, 3, 5, 5), (16, 8, 8, 8)]:
        for method in ("central", "richardson"):
            m = measure(shape, True, method)
            print(f"{str(m['shape']):>16} {m['mode']:>5} {m['method']:>10} {m['fwd_us']:>11.1f} "
                  f"{m['ratio']:>6.2f} {m['accuracy']:>9.1e} {'PASS' if m['passed'] else 'FAIL'}")


if __name__ == "__main__":
    main()
