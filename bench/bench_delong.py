"""Benchmark DeLong AUC + CI against scikit-learn's roc_auc_score, and the vectorised bootstrap AUC CI.

Prints, side by side in one run, with the machine:

* esoct ``auc_ci`` (fast DeLong, Sun & Xu 2014) for ``--n-large`` patients (goal: < 1 s for
  n = 100,000) against one call of ``sklearn.metrics.roc_auc_score`` (the AUC alone, no variance);
* esoct ``delong_test`` (two scores, AUCs + 2x2 covariance + z + p) for the same patients;
* esoct ``auc_ci(method="bootstrap")`` for ``--n`` patients and ``--resamples`` stratified
  resamples, all at once, against ``roc_auc_score`` called in a loop on the same resamples
  (the loop's AUCs are checked against esoct's replicates).

Wall times are the median of ``--repeat`` runs after one warm-up.

Run: ``.venv/bin/python bench/bench_delong.py [--n-large 100000] [--n 1000] [--resamples 1000] [--repeat 5]``
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

from esoct.evaluate.bootstrap import bootstrap_indices
from esoct.evaluate.roc import auc_ci, delong_test


def cohort(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30% positives; two correlated scores rounded to 3 decimals (so there are ties)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    a = np.round(y + rng.normal(size=n), 3)
    b = np.round(0.8 * a + 0.3 * y + rng.normal(0, 0.7, n), 3)
    return y, a, b


def timed(fn, repeat: int):
    """Median wall time of ``repeat`` calls after one warm-up, and the last result."""
    result = fn()
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-large", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    print(f"machine: {machine()}")
    y, a, b = cohort(args.n_large)
    t_ours, ci = timed(lambda: auc_ci(y, a), args.repeat)
    t_sk, auc_sk = timed(lambda: roc_auc_score(y, a), args.repeat)
    print(
        f"n = {args.n_large}: esoct DeLong auc_ci {t_ours * 1000:.1f} ms, AUC {ci} (goal < 1 s); "
        f"sklearn roc_auc_score (AUC only) {t_sk * 1000:.1f} ms; ratio esoct/sklearn {t_ours / t_sk:.2f}x; "
        f"|AUC difference| {abs(ci.estimate - auc_sk):.1e}"
    )
    t_test, test = timed(lambda: delong_test(y, a, b), args.repeat)
    print(
        f"n = {args.n_large}: esoct delong_test (2 scores) {t_test * 1000:.1f} ms: AUC {test.auc_a:.4f} vs "
        f"{test.auc_b:.4f}, z = {test.z:.2f}, p = {test.p_value:.2e}"
    )

    y, a, _ = cohort(args.n, seed=1)
    t_boot, boot = timed(lambda: auc_ci(y, a, method="bootstrap", n_resamples=args.resamples), args.repeat)
    indices = bootstrap_indices(args.n, args.resamples, seed=0, strata=y)
    t0 = time.perf_counter()
    loop = np.array([roc_auc_score(y[i], a[i]) for i in indices])
    t_loop = time.perf_counter() - t0
    print(
        f"n = {args.n}, {args.resamples} stratified resamples: esoct bootstrap auc_ci {t_boot * 1000:.0f} ms, "
        f"AUC {boot}; sklearn roc_auc_score loop {t_loop:.2f} s; ratio loop/esoct {t_loop / t_boot:.1f}x; "
        f"max |difference| of the AUCs {np.max(np.abs(loop - boot.replicates)):.1e}"
    )


if __name__ == "__main__":
    main()
