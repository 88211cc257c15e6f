"""Past the black-box limit: the default check (``strategy="auto"``) side by side with the loops.

    pip install -e . torch==2.13.0 && python benchmarks/bench_grouped.py

For each layer, all of its targets (``x`` and every parameter), float64,
train mode, one ``dout``, in one run and interleaved:

* **black-box limit**: ``2 n`` bare forward calls (``n`` = the elements of
  all targets), timed as :data:`LIMIT_CALLS` bare calls in a row (scaled to
  ``2 n``) right before the tools of the same layer, so that a loaded
  machine slows both alike;
* **CS231n loop**: ``eval_numerical_gradient_array`` as the course ships it
  (``h = 1e-5``, one element at a time, every target); on targets of more
  than :data:`LOOP_FULL` elements it is timed on that many elements and the
  time scaled by ``n / LOOP_FULL`` (marked ``*``);
* **gradcheck auto**: ``check_layer(layer, x, sequence=False)``, the default
  strategy: grouped where a structure is found;
* **torch gradcheck slow / fast** (when PyTorch is installed): the same
  function written in torch, ``torch.autograd.gradcheck`` w.r.t. ``x`` only
  (slow mode on inputs of at most :data:`TORCH_SLOW_MAX` elements), one
  thread.

Columns: forward calls, wall time, time / the black-box limit's time, and
whether a backward wrong by ``1e-6`` times the gradient's scale in a single
element of ``dx`` is caught (the loop: its relative error above the
course's ``1e-7``; torch: ``gradcheck`` raises at its default tolerances).
"""

import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: the cores are shared (set before numpy)

import numpy as np  # noqa: E402

from gradcheck import check_layer  # noqa: E402
from layers import Affine, BatchNormalization, Convolution, Relu, Sigmoid

#: Elements the CS231n loop is timed on per target before its time is scaled.
LOOP_FULL = 2048

#: torch's slow mode (a whole Jacobian) only up to this many input elements.
TORCH_SLOW_MAX = 4096

#: Bare forward calls timed for the black-box limit (scaled to 2n).
LIMIT_CALLS = 2000

#: The injected single-element error, relative to max|dx|.
ERROR = 1e-6


def cases():
    """``(label, make)``: ``make(rng) -> (layer, x)``."""
    def bn(shape):
        d = int(np.prod(shape[1:]))
        return lambda r: (BatchNormalization(r.uniform(0.5, 1.5, d), r.normal(size=d)),
                          r.normal(size=shape))
    return [
        ("BatchNormalization (64, 256)", bn((64, 256))),
        ("BatchNormalization (16, 8, 8, 8)", bn((16, 8, 8, 8))),
        ("Affine (64, 256) -> 128", lambda r: (Affine(r.normal(size=(256, 128)) * 0.06,
                                                      r.normal(size=128)),
                                               r.normal(size=(64, 256)))),
        ("Convolution (4, 3, 12, 12), 8 3x3", lambda r: (
            Convolution(r.normal(size=(8, 3, 3, 3)) * 0.2, r.normal(size=8)),
            r.normal(size=(4, 3, 12, 12)))),
        ("Relu (100, 1000)", lambda r: (Relu(), r.normal(size=(100, 1000)))),
        ("Sigmoid (100, 1000)", lambda r: (Sigmoid(), r.normal(size=(100, 1000)))),
    ]


def params(layer):
    """``{name: array}`` of the layer's trainable parameters (those with a ``d`` + name)."""
    return {k: v for k, v in vars(layer).items() if isinstance(v, np.ndarray)
            and k in ("W", "b", "gamma", "beta")}


def forward_time(layer, x, calls=LIMIT_CALLS):
    """Mean time of one bare forward call over ``calls`` calls in a row."""
    layer.forward(x)
    t0 = time.perf_counter()
    for _ in range(calls):
        layer.forward(x)
    return (time.perf_counter() - t0) / calls


def cs231n_loop(f, x, df, h=1e-5, limit=None):
    """CS231n's ``eval_numerical_gradient_array`` (on the first ``limit`` elements)."""
    grad = np.zeros_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size if limit is None else min(limit, flat.size)):
        old = flat[i]
        flat[i] = old + h
        pos = f(x).copy()
        flat[i] = old - h
        neg = f(x).copy()
        flat[i] = old
        g[i] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def seconds(t):
    """A wall time for the table: two decimals, three significant digits below 0.1 s."""
    return f"{t:.2f}" if t >= 0.1 else f"{t:.3g}"


def rel_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


class Injected:
    """The layer with ``dx`` wrong by ``ERROR * max|dx|`` in one element (index ``j``)."""

    def __init__(self, layer, j):
        self.layer, self.j = layer, j

    def __getattr__(self, name):
        return getattr(self.__dict__["layer"], name)

    def forward(self, x, train_flg=True):
        return self.layer.forward(x, train_flg) if isinstance(self.layer, BatchNormalization) \
            else self.layer.forward(x)

    def backward(self, dout):
        dx = np.array(self.layer.backward(dout), copy=True)
        flat = dx.reshape(-1)
        flat[self.j] += ERROR * float(np.max(np.abs(dx)))
        for k in params(self.layer):
            setattr(self, "d" + k, getattr(self.layer, "d" + k))
        return dx


def loop_row(layer, x, dout, j):
    """``(seconds, scaled, caught)`` of the CS231n loop on every target of the layer."""
    out = layer.forward(x)
    dx = layer.backward(dout)
    analytic = {"x": np.array(dx)}
    analytic.update({k: np.array(getattr(layer, "d" + k)) for k in params(layer)})
    t0, scaled, caught = time.perf_counter(), False, False
    elapsed = 0.0
    for name, arr in [("x", x)] + list(params(layer).items()):
        limit = LOOP_FULL if arr.size > LOOP_FULL else None
        t0 = time.perf_counter()
        num = cs231n_loop(lambda _: layer.forward(x), arr, dout, limit=limit)
        dt = time.perf_counter() - t0
        elapsed += dt * (arr.size / limit if limit else 1.0)
        scaled = scaled or bool(limit)
        if name == "x":
            bad = analytic["x"].copy().reshape(-1)
            bad[j] += ERROR * float(np.max(np.abs(bad)))
            m = limit or arr.size
            caught = rel_error(num.reshape(-1)[:m], bad[:m]) > 1e-7
    del out
    return elapsed, scaled, caught


def torch_rows(label, layer, x, dout):
    """``[(tool, seconds, caught or None)]`` of torch.autograd.gradcheck w.r.t. x."""
    try:
        import torch
    except ImportError:
        return []
    torch.set_num_threads(1)
    fn = torch_function(layer)
    if fn is None:
        return []
    xt = torch.tensor(x, requires_grad=True)
    rows = []
    for mode, fast in (("slow", False), ("fast", True)):
        if not fast and x.size > TORCH_SLOW_MAX:
            rows.append((f"torch gradcheck {mode}", None, None))
            continue
        t0 = time.perf_counter()
        torch.autograd.gradcheck(fn, (xt,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=fast)
        rows.append((f"torch gradcheck {mode}", time.perf_counter() - t0, False))
    return rows


def torch_function(layer):
    import torch

    if isinstance(layer, BatchNormalization):
        g, b = torch.tensor(layer.gamma), torch.tensor(layer.beta)

        def bn(xt):
            x2 = xt.reshape(xt.shape[0], -1)
            xc = x2 - x2.mean(0)
            return (g * xc / torch.sqrt((xc ** 2).mean(0) + 1e-6) + b).reshape(xt.shape)
        return bn
    if isinstance(layer, Affine):
        W, b = torch.tensor(layer.W), torch.tensor(layer.b)
        return lambda xt: xt.reshape(xt.shape[0], -1) @ W + b
    if isinstance(layer, Convolution):
        W, b = torch.tensor(layer.W), torch.tensor(layer.b)
        return lambda xt: torch.nn.functional.conv2d(xt, W, b, stride=layer.stride,
                                                     padding=layer.pad)
    if isinstance(layer, Relu):
        return torch.relu
    if isinstance(layer, Sigmoid):
        return torch.sigmoid
    return None


def main():
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} at the start "
          f"(other jobs share the cores: read ratios as +-30 %); BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}\n")
    print("| layer | tool | forward calls | time s | / limit | 1e-6 error caught |")
    print("|---|---|---|---|---|---|")
    for label, make in cases():
        rng = np.random.default_rng(0)
        layer, x = make(rng)
        out = layer.forward(x)
        dout = np.random.default_rng(1).standard_normal(out.shape)
        n = x.size + sum(v.size for v in params(layer).values())
        t_fwd = forward_time(layer, x, min(2 * n, LIMIT_CALLS))
        limit = 2 * n * t_fwd
        j = int(np.random.default_rng(2).integers(min(x.size, LOOP_FULL)))
        print(f"| {label} | black-box limit 2n ({t_fwd * 1e6:.0f} µs a call) | {2 * n} | "
              f"{limit:.2f} | 1.00 | - |")
        t, scaled, caught = loop_row(make(np.random.default_rng(0))[0], x.copy(), dout, j)
        print(f"| {label} | CS231n loop | {2 * n} | {t:.2f}{'*' if scaled else ''} | "
              f"{t / limit:.2f} | {'yes' if caught else 'no'} |")
        t0 = time.perf_counter()
        rep = check_layer(make(np.random.default_rng(0))[0], x, dout=dout, sequence=False)
        t = time.perf_counter() - t0
        used = "/".join(sorted({r.strategy for r in rep.results}))
        bad = check_layer(Injected(make(np.random.default_rng(0))[0], j), x, dout=dout,
                          sequence=False, wrt=["x"], params={})
        caught = bad.result("x").verdict == "FAIL"
        print(f"| {label} | gradcheck auto ({used}; {'PASS' if rep.passed else 'not PASS'}) | "
              f"{rep.forward_calls} ({2 * n / rep.forward_calls:.0f}x fewer) | {seconds(t)} | "
              f"{t / limit:.3f} | {'yes' if caught else 'no'} |", flush=True)
        print(f"| {label} | per target, auto (`wrt=[t]`) | {per_target(make, dout)} | | | |")
        for tool, t, _ in torch_rows(label, make(np.random.default_rng(0))[0], x, dout):
            if t is None:
                print(f"| {label} | {tool} (x only) | - | not run (> {TORCH_SLOW_MAX} "
                      "elements) | - | - |")
                continue
            caught = torch_caught(make(np.random.default_rng(0))[0], x, j, tool.endswith("fast"))
            print(f"| {label} | {tool} (x only) | - | {seconds(t)} | {t / (2 * x.size * t_fwd):.3f}"
                  f" (of x's limit) | {'yes' if caught else 'no'} |", flush=True)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} at the end")


def per_target(make, dout):
    """``"x 156 (210x), gamma 19 (27x), ..."``: each target checked alone (with its own
    analytic calls), and its black-box limit over that."""
    layer, x = make(np.random.default_rng(0))
    parts = []
    for name in ["x"] + list(params(layer)):
        layer, x = make(np.random.default_rng(0))
        rep = check_layer(layer, x, dout=dout, wrt=[name], sequence=False)
        size = x.size if name == "x" else getattr(layer, name).size
        parts.append(f"{name} {rep.forward_calls} ({2 * size / rep.forward_calls:.0f}x)")
    return ", ".join(parts)


def torch_caught(layer, x, j, fast):
    """Whether torch's gradcheck (default tolerances) catches the injected error in ``dx``."""
    import torch

    fn = torch_function(layer)
    scale = [None]

    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, xt):
            ctx.save_for_backward(xt)
            return fn(xt)

        @staticmethod
        def backward(ctx, g):
            (xt,) = ctx.saved_tensors
            with torch.enable_grad():
                x2 = xt.detach().requires_grad_(True)
                (dx,) = torch.autograd.grad(fn(x2), x2, g)
            if scale[0] is None:
                scale[0] = float(dx.abs().max())
            dx = dx.clone()
            dx.view(-1)[j] += ERROR * scale[0]
            return dx

    xt = torch.tensor(x, requires_grad=True)
    try:
        torch.autograd.gradcheck(Wrong.apply, (xt,), eps=1e-6, atol=1e-5, rtol=1e-3,
                                 fast_mode=fast)
    except RuntimeError:
        return True
    return False


if __name__ == "__main__":
    main()
