"""Benchmark the bootstrap C-index CI: esoct's all-resamples-at-once engine vs lifelines / scikit-survival loops.

Prints, side by side in one run, with the machine:

* esoct ``harrell_c_ci`` for n patients and B resamples (median wall time of ``--repeat`` runs;
  goal: < 2 s for n = 1000, B = 1000);
* lifelines ``concordance_index`` called in a loop on the same resamples (goal: esoct >= 10x faster);
* scikit-survival ``concordance_index_censored`` in the same loop;
* the point estimate alone for ``--n-large`` patients (O(n log n)): esoct ``harrell_c`` vs one call of
  lifelines' ``concordance_index`` (both with exact risk ties, ``tied_tol=0``).

A loop that would run longer than ``--budget`` seconds is timed on the first resamples only and
extrapolated linearly to B (the output says so). The loop's C-indices are checked against esoct's
replicates on the resamples it ran.

Run: ``.venv/bin/python bench/bench_cindex.py [--n 1000] [--resamples 1000] [--repeat 3] [--budget 60] [--n-large 100000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import machine

from esoct.evaluate.concordance import bootstrap_indices, harrell_c, harrell_c_ci


def cohort(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponential survival with hazard exp(x), censoring at rate 1/2 (about 2/3 events), times in 0.1 months."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(24.0 / np.exp(x))
    t_cens = rng.exponential(48.0, n)
    return t_event <= t_cens, np.minimum(t_event, t_cens).round(1), x + rng.normal(0, 0.5, n)


def time_esoct(event, time_, risk, n_resamples: int, repeat: int):
    """Median wall time of harrell_c_ci and its result."""
    walls, ci = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ci = harrell_c_ci(event, time_, risk, n_resamples=n_resamples, seed=0)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), ci


def time_loop(c_index, indices: np.ndarray, budget: float) -> tuple[float, int, np.ndarray]:
    """Seconds for all resamples (extrapolated past ``budget``), resamples actually run, their values."""
    values = []
    t0 = time.perf_counter()
    for i in indices:
        values.append(c_index(i))
        if time.perf_counter() - t0 > budget:
            break
    wall = time.perf_counter() - t0
    return wall * len(indices) / len(values), len(values), np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per reference loop before extrapolating")
    parser.add_argument("--n-large", type=int, default=100_000, help="patients for the point-estimate timing")
    args = parser.parse_args()

    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    event, time_, risk = cohort(args.n)
    indices = bootstrap_indices(args.n, args.resamples, seed=0)
    print(f"machine: {machine()}")
    print(f"cohort: n = {args.n}, {int(event.sum())} events, {args.resamples} bootstrap resamples (seed 0)")

    ours, ci = time_esoct(event, time_, risk, args.resamples, args.repeat)
    print(f"esoct harrell_c_ci: {ours:.3f} s (median of {args.repeat}), C = {ci} (goal < 2 s)")

    loops = {
        "lifelines concordance_index": lambda i: concordance_index(time_[i], -risk[i], event[i]),
        "sksurv concordance_index_censored": lambda i: concordance_index_censored(event[i], time_[i], risk[i])[0],
    }
    for name, fn in loops.items():
        fn(indices[0])  # warm-up
        wall, done, values = time_loop(fn, indices, args.budget)
        note = "" if done == len(indices) else f" (timed {done} resamples, extrapolated linearly to {len(indices)})"
        diff = np.max(np.abs(values - ci.replicates[:done]))
        goal = " (goal >= 10x)" if name.startswith("lifelines") else ""
        print(
            f"{name} loop: {wall:.2f} s{note}; ratio loop/esoct {wall / ours:.1f}x{goal}; "
            f"max |difference| of the C-indices {diff:.1e}"
        )
    point_estimate(args.n_large)


def point_estimate(n: int) -> None:
    """One C-index for many patients: esoct vs a single lifelines call, exact risk ties in both."""
    from lifelines.utils import concordance_index

    event, time_, risk = cohort(n, seed=1)
    t0 = time.perf_counter()
    ours = harrell_c(event, time_, risk, tied_tol=0.0)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = concordance_index(time_, -risk, event)
    t_ref = time.perf_counter() - t0
    print(
        f"point estimate, n = {n}: esoct harrell_c {t_ours:.2f} s, lifelines {t_ref:.2f} s, "
        f"ratio lifelines/esoct {t_ref / t_ours:.1f}x; |difference| {abs(ours - ref):.1e}"
    )


if __name__ == "__main__":
    main()
