"""Cost of the sequence check (``sequence=True``, the default) against the check without it.

    python benchmarks/bench_sequence.py

For each layer and input size, one run measures side by side, in the same
process and interleaved (best of 5 each):

* *base*: ``check_layer(..., sequence=False)``, the default check
  (``strategy="auto"``: grouped where a structure is found) without it;
* *with*: the same with ``sequence=True`` (the default);
* *share*: the time spent inside the sequence check itself (timed in the same
  calls as *with*), as a fraction of *with*: the measure least sensitive to a
  loaded machine;

and the extra forward and backward calls it made. Goal: *share* under 5 % on
typical sizes (the sizes of ``bench_engine.py``); tiny inputs, whose whole
check is a few milliseconds, are listed for what they cost.
"""

import time

import numpy as np

from gradcheck import check_layer
from gradcheck.gate import suite
from gradcheck.protocol import history

#: (spec name, input shape, train_flg): BatchNormalization at bench_engine's sizes, others typical.
CASES = [
    ("BatchNormalization-2d", (32, 64), True),
    ("BatchNormalization-2d", (32, 64), False),
    ("BatchNormalization-2d", (64, 256), True),
    ("BatchNormalization-4d", (4, 3, 5, 5), True),
    ("BatchNormalization-4d", (16, 8, 8, 8), True),
    ("Affine-2d", (32, 64), True),
    ("Convolution", (4, 3, 8, 8), True),
    ("Dropout", (32, 64), True),
    ("LayerNorm-2d", (32, 64), True),
    ("Sequential-mlp", (16, 20), True),
    ("Digits-MLP", (16, 64), True),
    ("Affine-2d", (4, 5), True),
    ("Relu", (4, 5), True),
]


class _Timer:
    """Wraps ``history.check_history`` and adds up the time spent in it."""

    def __init__(self):
        self.total = 0.0
        self.inner = history.check_history

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - t0


def measure(name, shape, train_flg, repeat=5):
    spec = suite.get_spec(name)
    layer, x = spec.make(shape, np.random.default_rng(0), train_flg)
    timer = _Timer()
    history.check_history = timer
    best = {"base": np.inf, "with": np.inf, "share": np.inf}
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            base = check_layer(layer, x, train_flg=train_flg, sequence=False,
                               **spec.options_for(train_flg))
            best["base"] = min(best["base"], time.perf_counter() - t0)
            timer.total = 0.0
            t0 = time.perf_counter()
            full = check_layer(layer, x, train_flg=train_flg, **spec.options_for(train_flg))
            t = time.perf_counter() - t0
            best["with"] = min(best["with"], t)
            best["share"] = min(best["share"], timer.total / t)
    finally:
        history.check_history = timer.inner
    failed = [f"{r.name} {r.verdict} (margin {r.margin:.2g})" for rep in (base, full)
              for r in rep.results if not r.passed]
    return dict(name=name, shape=shape, mode="train" if train_flg else "eval", failed=failed,
                base=best["base"], full=best["with"], share=best["share"],
                fwd=full.forward_calls - base.forward_calls, base_fwd=base.forward_calls,
                bwd=full.backward_calls - base.backward_calls, base_bwd=base.backward_calls)


def main():
    print(f"| layer | shape | mode | base ms | with ms | share | extra forward | extra backward |")
    print("|---|---|---|---|---|---|---|---|")
    for name, shape, train_flg in CASES:
        try:
            m = measure(name, shape, train_flg)
        except KeyError as exc:  # Digits-MLP needs scikit-learn
            print(f"| {name} | {shape} | skipped: {exc} |")
            continue
        print(f"| {m['name']} | {m['shape']} | {m['mode']} | {m['base'] * 1e3:.1f} | "
              f"{m['full'] * 1e3:.1f} | {100 * m['share']:.1f} % | {m['fwd']} of "
              f"{m['base_fwd']} | {m['bwd']} of {m['base_bwd']} |", flush=True)
        if m["failed"]:  # a correct layer that did not pass: shown, not hidden by a crash
            print(f"|  | (the correct layer did not pass: {'; '.join(m['failed'])}) |")


if __name__ == "__main__":
    main()
