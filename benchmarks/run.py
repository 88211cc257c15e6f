"""Every benchmark in one command, printing the tables of benchmarks/README.md.

    pip install -e '.[examples]' torch==2.13.0 && python benchmarks/run.py

Runs, in this order: the default check against the black-box limit, the
CS231n loop and torch.autograd.gradcheck on six layers (bench_grouped), cost
and accuracy per method (bench_engine), accuracy per
forward call on every built-in layer (bench_methods), the speed-up of
n_jobs=2 and of a 2-worker dask cluster, and n_jobs's break-even
(bench_parallel), the cost of the sequence check (bench_sequence), the
detection table (bench_detection: the smallest single-element error each
method and strategy catches, torch.autograd.gradcheck beside it when PyTorch
is installed) and, when PyTorch is installed, the side-by-side comparison
with torch.autograd.gradcheck (bench_vs_torch).
"""

import importlib.util
import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: the cores are shared (set before numpy)

HERE = Path(__file__).resolve().parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # importable by name: its functions pickle for worker processes
    spec.loader.exec_module(module)
    return module


def main():
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / "
          f"{load[2]:.2f} (1 / 5 / 15 min) at the start; BLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}", flush=True)
    for name in ("bench_grouped", "bench_engine", "bench_methods", "bench_parallel",
                 "bench_sequence", "bench_detection", "bench_vs_torch"):
        if name == "bench_vs_torch" and importlib.util.find_spec("torch") is None:
            print(f"\n## {name}: skipped (pip install torch==2.13.0)")
            continue
        print(f"\n## {name}\n", flush=True)
        _load(name).main()
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
