"""Speed-up of ``n_jobs`` on this machine, serial and parallel in one run.

    pip install -e . && python benchmarks/bench_parallel.py
"""

import os
import time

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.suite import make_batchnorm


def main():
    print(f"cores: {os.cpu_count()}")
    print("| shape | serial s | n_jobs=2 s | speed-up | bit-identical |")
    print("|---|---|---|---|---|")
    for shape in [(64, 256), (16, 8, 16, 16)]:
        layer, x = make_batchnorm(shape, np.random.default_rng(0), True)
        t0 = time.perf_counter()
        serial = check_layer(layer, x, wrt=["x"], strategy="elementwise")
        t1 = time.perf_counter()
        par = check_layer(layer, x, wrt=["x"], n_jobs=2, strategy="elementwise")
        t2 = time.perf_counter()
        same = np.array_equal(serial.result("x").numerical, par.result("x").numerical)
        print(f"| {shape} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t1 - t0) / (t2 - t1):.2f} | {same} |")


if __name__ == "__main__":
    main()
