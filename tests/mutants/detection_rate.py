"""Detection rate of the mutant corpus per method and strategy, as a markdown table.

    python tests/mutants/detection_rate.py [--seeds 5] [--methods central,forward]

For every method and every strategy ``check_layer`` accepts, every mutant is
checked in every mode where its bug lives: "detected" means the check of the
mutant's target FAILs. The correct layers are checked in the same
configurations: "false failures" counts those that do not pass. "Smallest
margin" is the smallest ``|numerical - analytic| / tolerance`` of a mutant's
target (above 1 fails): how close the least visible bug came to passing. Deterministic
strategies are run with ``seed=0``; strategies that sample (``"sampled"``,
``"projection"``) with ``--seeds`` seeds, and the rate is over all runs.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from gradcheck import GradCheckInputError, check_layer  # noqa: E402
from gradcheck.validate import METHODS, STRATEGIES  # noqa: E402
from mutants.corpus import MUTANTS  # noqa: E402

RANDOM_STRATEGIES = ("sampled", "projection")


def measure(method, strategy, seeds):
    detected = runs = false_failures = errors = unsupported = 0
    missed, margins = [], []
    for name, m in MUTANTS.items():
        for mode in m.modes:
            for seed in seeds:
                runs += 1
                layer, x = m.build(mode)
                try:
                    r = check_layer(layer, x, train_flg=mode, method=method, strategy=strategy,
                                    seed=seed)
                    hit = not r.result(m.target).passed
                    margins.append((r.result(m.target).margin, name))
                except GradCheckInputError as exc:
                    if method == "complex" and "complex" in str(exc):
                        unsupported += 1
                        runs -= 1
                        continue
                    hit, errors = False, errors + 1
                detected += hit
                if not hit:
                    missed.append(f"{name}-{'train' if mode else 'eval'}")
                layer, x = m.build(mode, correct=True)
                r = check_layer(layer, x, train_flg=mode, method=method, strategy=strategy,
                                seed=seed)
                false_failures += not r.passed
    return (detected, runs, false_failures, errors, sorted(set(missed)),
            min(margins) if margins else (float('nan'), '-'), unsupported)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5,
                   help="seeds per mutant for the sampling strategies (default 5)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    args = p.parse_args(argv)
    cases = sum(len(m.modes) for m in MUTANTS.values())
    print(f"{len(MUTANTS)} mutants, {cases} (mutant, mode) cases\n")
    print("| method | strategy | detected | rate | false failures (correct layers) "
          "| smallest margin (mutant) | seconds | missed |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        for strategy in args.strategies.split(","):
            if method == "complex" and strategy != "elementwise":
                continue  # the complex step is elementwise only
            seeds = range(args.seeds) if strategy in RANDOM_STRATEGIES else (0,)
            t0 = time.perf_counter()
            det, runs, ff, err, missed, (mm, mname), uns = measure(method, strategy, seeds)
            dt = time.perf_counter() - t0
            note = ", ".join(missed) or "-"
            if err:
                note += f" ({err} raised)"
            if uns:
                note += f" ({uns} cases not complex-analytic, not counted)"
            print(f"| {method} | {strategy} | {det}/{runs} | {det / max(runs, 1):.1%} | {ff}/{runs} "
                  f"| {mm:.3g} ({mname}) | {dt:.1f} | {note} |")


if __name__ == "__main__":
    main()
