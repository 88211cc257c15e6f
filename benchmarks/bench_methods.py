"""Which method gives the best accuracy per forward call on the built-in layers?

    pip install -e . && python benchmarks/bench_methods.py

For every built-in layer configuration (layers/specs.py, first shape, every
mode) and every method: forward calls, the worst error of the numerical
gradient relative to the gradient's scale (against the analytic gradient of
the correct layer), and digits of accuracy per forward call per element,
``-log10(error) / (calls / n)``. Methods that refuse a layer (the complex
step on a forward that is not complex-analytic) are marked.
"""

import numpy as np

from gradcheck import GradCheckInputError, check_layer
from gradcheck.gate.suite import builtin_cases

METHODS = ("forward", "central", "central4", "richardson", "complex")


def main():
    seen = set()
    rows = {m: [] for m in METHODS}
    print("| layer | mode | " + " | ".join(METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for case in builtin_cases():
        key = (case.spec.name, case.train_flg)
        if key in seen:
            continue
        seen.add(key)
        cells = []
        for method in METHODS:
            layer, x = case.build()
            try:
                rep = check_layer(layer, x, train_flg=case.train_flg, method=method,
                                  strategy="elementwise",
                                  **case.spec.options_for(case.train_flg))
            except GradCheckInputError:
                cells.append("refuses")
                continue
            # a gradient zero by the layer's structure (expect_zero: a bias before a
            # train-mode batch norm) has no scale to be relative to: left out of the error
            judged = [r for r in rep.results if r.name not in case.spec.options_for(
                case.train_flg).get("expect_zero", ())]
            n = sum(r.n_checked for r in rep.results)
            err = max(max(r.max_rel_error for r in judged), 1e-17)
            per_call = -np.log10(err) / (rep.forward_calls / n)
            rows[method].append(per_call)
            cells.append(f"{err:.0e} / {per_call:.1f}")
        print(f"| {case.spec.name} | {'train' if case.train_flg else 'eval'} | "
              + " | ".join(cells) + " |")
    print("\nmedian digits per call: " + ", ".join(
        f"{m} {np.median(v):.2f} ({len(v)} layers)" for m, v in rows.items() if v))


if __name__ == "__main__":
    main()
