"""Side by side: gradcheck against torch.autograd.gradcheck on the seed's BatchNormalization.

    pip install -e . torch==2.13.0 && python benchmarks/bench_vs_torch.py

Same function, same float64 input, same upstream gradient, in one run:
``L = sum(BN(x) * dout)`` with the seed's formula (4D flattened, eps 1e-6).

* time: wall time of the check of dL/dx, divided by (2n x one bare numpy
  forward call) -- 1.0 is the black-box limit of central differences;
* accuracy: max|numerical - exact| / max|exact| of the numerical dL/dx, with
  the exact one from the analytic backward (which agrees with torch autograd).
"""

import time
import warnings

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.suite import make_batchnorm


def best_of(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    import torch
    from torch.autograd.gradcheck import get_numerical_jacobian

    torch.set_num_threads(1)
    print("| shape | tool | calls | ratio | accuracy |")
    print("|---|---|---|---|---|")
    for shape in [(32, 64), (4, 3, 5, 5), (16, 8, 8, 8), (64, 256)]:
        rng = np.random.default_rng(0)
        layer, x = make_batchnorm(shape, rng, True)
        n = x.size
        dout = np.random.default_rng(0).standard_normal(shape)
        t_fwd, _ = best_of(lambda: [layer.forward(x) for _ in range(100)], 5)
        t_fwd /= 100
        limit = 2 * n * t_fwd
        exact = check_layer(layer, x, dout=dout, wrt=["x"], method="complex") \
            .result("x").analytic

        def acc(num):
            return float(np.max(np.abs(num - exact)) / np.max(np.abs(exact)))

        for method in ("central", "richardson", "complex"):
            t, rep = best_of(lambda: check_layer(layer, x, dout=dout, wrt=["x"], method=method,
                                                 strategy="elementwise"))
            r = rep.result("x")
            print(f"| {shape} | gradcheck {method} | {rep.forward_calls} | {t / limit:.2f} | "
                  f"{acc(r.numerical):.1e} |")
        t, rep = best_of(lambda: check_layer(layer, x, dout=dout, wrt=["x"]), 3)
        print(f"| {shape} | gradcheck auto (default: {rep.result('x').strategy}) | "
              f"{rep.forward_calls} | {t / limit:.3f} | {acc(rep.result('x').numerical):.1e} |")
        t, rep = best_of(lambda: check_layer(layer, x, dout=dout, wrt=["x"],
                                             strategy="projection"), 3)
        print(f"| {shape} | gradcheck projection (8 probes) | {rep.forward_calls} | "
              f"{t / limit:.3f} | one projection per probe |")

        g = torch.tensor(layer.gamma)
        b = torch.tensor(layer.beta)
        d = torch.tensor(dout)

        def bn(xt):
            x2 = xt.reshape(xt.shape[0], -1)
            mu = x2.mean(0)
            xc = x2 - mu
            var = (xc ** 2).mean(0)
            return (g * xc / torch.sqrt(var + 1e-6) + b).reshape(xt.shape)

        xt = torch.tensor(x, requires_grad=True)
        loss = lambda xt: (bn(xt) * d).sum()  # noqa: E731
        t, _ = best_of(lambda: torch.autograd.gradcheck(loss, (xt,), eps=1e-6, atol=1e-5,
                                                        rtol=1e-3), 1)
        num = _jacobian(get_numerical_jacobian, lambda t: loss(t[0]), xt).reshape(shape)
        print(f"| {shape} | torch gradcheck slow, scalar loss | {2 * n + 2} | {t / limit:.2f} | "
              f"{acc(num):.1e} |")
        if n <= 2048:
            t, _ = best_of(lambda: torch.autograd.gradcheck(bn, (xt,), eps=1e-6, atol=1e-5,
                                                            rtol=1e-3), 1)
            J = _jacobian(get_numerical_jacobian, lambda t: bn(t[0]), xt)
            num = (J @ dout.reshape(-1)).reshape(shape)
            print(f"| {shape} | torch gradcheck slow, whole Jacobian | {2 * n} + {n} bwd | "
                  f"{t / limit:.2f} | {acc(num):.1e} |")
        t, _ = best_of(lambda: torch.autograd.gradcheck(bn, (xt,), eps=1e-6, atol=1e-5,
                                                        rtol=1e-3, fast_mode=True), 3)
        print(f"| {shape} | torch gradcheck fast mode | ~4 | {t / limit:.3f} | "
              "one projection |")


def _jacobian(get_numerical_jacobian, fn, xt):
    """torch's own finite-difference Jacobian (eps=1e-6), its deprecation warning silenced:
    it is the numbers torch.autograd.gradcheck compares, which is what is measured here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return get_numerical_jacobian(fn, (xt,), eps=1e-6)[0].numpy()


if __name__ == "__main__":
    main()
