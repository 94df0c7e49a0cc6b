"""Estimated wall time of a study's tasks, printed by `esoct run --check` before any work starts.

A cost model per task counts the work the study file asks for (training steps and the voxels of
each patch, samples x epochs x folds, patients and scans, trees and resamples) and multiplies each
count by a unit cost measured on the reference machine (:data:`REFERENCE_MACHINE`). Two probes
bring it to this machine: a fixed 3D convolution step timed here against its reference time
(:func:`cpu_factor`), and, for the radiomics tasks, one PyRadiomics extraction of the first
patient with the study's own parameter file (:func:`radiomics_probe`; the parameter file decides
most of that cost). The result is a planning figure, good to about a factor of 1.5: data loading,
other load on the machine and early stopping are not modelled.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

REFERENCE_MACHINE = "Linux x86_64, 2 cores (Intel Xeon), no GPU, torch 2.13.0+cpu"

#: Unit costs on :data:`REFERENCE_MACHINE`, seconds. Segmentation: the bench's full runs
#: (bench/results/cascade.json: 0.78 s per stage-1 step of 2 x 24 x 80 x 80 voxels, 0.55 s per stage-2
#: step of 2 x 40 x 56 x 48 voxels, 2.2 s per training patient for the crops, 2.2 s per test patient);
#: the per-patient and fixed costs of every task: fitted to two studies timed per task on the same
#: machine (results/run.json): the 60-patient demo and the tests' 30-patient study (tests/study/
#: test_full_study.py, tiny networks), so that both come out within a factor of 1.5.
UNIT_SECONDS = {
    "seg_voxel_step": 2.6e-6,      # per voxel of a training patch per sample, at 16 base features
    "seg_step": 0.03,              # per optimiser step (loading, augmentation, optimiser)
    "seg_train_patient": 10.0,      # fingerprint read, stage-2 crop, both nnU-Net exports per training patient
    "seg_test_patient": 4.5,       # both stages' inference, scoring (HD95, ASSD, nodes) per test patient
    "seg_fixed": 10.0,             # plans, nnU-Net export bookkeeping, figures
    "roi_patient": 0.3,            # 2D ROI slices of one patient
    "tstage_sample_epoch": 0.017,   # one ROI sequence through one epoch of one model
    "tstage_fixed": 1.0,
    "krt_patient": 0.05,            # one KRT crop
    "krt_sample_epoch": 0.032,     # one 32^3 crop through one epoch (scaled by its voxels)
    "tstage4_fixed": 1.0,
    "lnm_patient": 0.25,            # lymph-node features of one patient
    "lnm_fixed": 1.6,
    "scan_vs_probe": 0.6,          # a cohort's mean extraction time / the probed patient's (demo: 0.6)
    "survival_tree": 0.004,        # one tree of one random survival forest fit
    "survival_resample": 0.05,     # one bootstrap resample of the test metrics
    "survival_fixed": 6.0,
}

#: Seconds of :func:`_conv_step` on the reference machine (median of 9 after 3 warm-up steps, one torch thread).
REFERENCE_CONV_SECONDS = 0.048


@dataclass
class TaskEstimate:
    """Estimated wall time of one task.

    Attributes
    ----------
    task : str
    seconds : float
        On this machine (reference cost x :func:`cpu_factor`).
    basis : str
        What was counted, in words.
    """

    task: str
    seconds: float
    basis: str


def _conv_step() -> float:
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 24, 48, 48, generator=gen)
    conv = torch.nn.Conv3d(8, 16, 3, padding=1)
    t0 = time.perf_counter()
    conv(x).square().mean().backward()
    return time.perf_counter() - t0


def cpu_factor() -> float:
    """How much slower this machine runs a fixed 3D convolution step than the reference (1 = same)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(3):  # allocator and cache warm-up
            _conv_step()
        runs = sorted(_conv_step() for _ in range(9))
    finally:
        torch.set_num_threads(threads)
    return runs[4] / REFERENCE_CONV_SECONDS


def radiomics_probe(manifest, params) -> float | None:
    """Seconds of one PyRadiomics extraction (first patient's pre-treatment tumour, the study's parameters)."""
    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.io.imageio import read_image

    for pid in manifest.patients[:3]:
        try:
            image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
            mask = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
            extractor = RadiomicsExtractor(params)
            extractor.extract(image, mask, patient=pid)  # the first call also pays PyRadiomics' one-off set-up
            t0 = time.perf_counter()
            extractor.extract(image, mask, patient=pid)
            return time.perf_counter() - t0
        except Exception:  # noqa: BLE001 - a probe: the next patient, or no estimate
            continue
    return None


def _seg(task: dict, n_train: int, n_test: int) -> tuple[float, str]:
    u = UNIT_SECONDS
    budget_voxels = 130_000.0 * float(task["memory_budget_mb"]) / 150.0 * 16.0 / float(task["base_features"])
    width = (float(task["base_features"]) / 16.0) ** 2
    seconds, steps = u["seg_fixed"], []
    for stage in ("stage1", "stage2"):
        patch = task.get(f"{stage}_patch")
        voxels = math.prod(patch) if patch else budget_voxels
        n = int(task[f"{stage}_epochs"]) * int(task["iterations"])
        steps.append(n)
        seconds += n * (u["seg_step"] + u["seg_voxel_step"] * 2 * voxels * width)
    n_train = min(n_train, int(task["max_train_patients"]))
    seconds += n_train * u["seg_train_patient"] + n_test * u["seg_test_patient"]
    return seconds, f"{steps[0]} + {steps[1]} training steps; {n_train} training, {n_test} test patients"


def _tstage(task: dict, n: int) -> tuple[float, str]:
    from esoct.tstage.presets import get_preset

    u = UNIT_SECONDS
    epochs = get_preset(task["preset"]).epochs
    folds = int(task["folds"])
    samples = len(task["models"]) * folds * epochs * n * (folds - 1) / folds
    return (u["tstage_fixed"] + n * u["roi_patient"] + samples * u["tstage_sample_epoch"],
            f"{len(task['models'])} model(s) x {folds} folds x {epochs} epochs over {n} patients")


def _tstage4(task: dict, n: int) -> tuple[float, str]:
    u = UNIT_SECONDS
    folds, epochs = int(task["folds"]), int(task["epochs"])
    scale = math.prod(task["krt_size"]) / 32_768.0
    samples = folds * epochs * n * (folds - 1) / folds
    return (u["tstage4_fixed"] + n * u["krt_patient"] + samples * scale * u["krt_sample_epoch"],
            f"{folds} folds x {epochs} epochs over {n} KRT crops")


def _lnm(task: dict, n: int, probe: float | None) -> tuple[float, str]:
    u = UNIT_SECONDS
    seconds = u["lnm_fixed"] + n * u["lnm_patient"]
    if "tumour" in task["features"] and probe is not None:
        seconds += n * probe * u["scan_vs_probe"]
    return seconds, f"features of {n} patients ({task['features']})"


def _survival(task: dict, n: int, probe: float | None, workers: int) -> tuple[float, str]:
    u = UNIT_SECONDS
    scans = 3 * n  # pre, post and the second reading of pre (ICC)
    extraction = scans * (probe * u["scan_vs_probe"] if probe is not None else 3.0) / max(1, workers)
    trees = 6 * (int(task["cv"]) + 1) * int(task["n_estimators"])
    seconds = u["survival_fixed"] + extraction + trees * u["survival_tree"] + int(task["n_bootstrap"]) * u["survival_resample"]
    probe_text = f"{probe:.1f} s per scan measured" if probe is not None else "3 s per scan assumed"
    return seconds, f"radiomics of {scans} scans ({probe_text}, {workers} worker(s)); 6 forests x {int(task['cv']) + 1} fits"


def estimate_study(config, *, probe: bool = True) -> tuple[list[TaskEstimate], float]:
    """Estimated wall time of every enabled task of a study on this machine.

    Parameters
    ----------
    config : esoct.study.config.StudyConfig
    probe : bool
        Time the CPU probe and one radiomics extraction (a few seconds); False uses the reference costs.

    Returns
    -------
    list of TaskEstimate, float
        One per enabled task, in run order; and the CPU factor used.
    """
    import os

    from esoct.io.manifest import load_manifest
    from esoct.study.config import split_table

    manifest = load_manifest(config.manifest)
    table = manifest.table[manifest.table["patient_id"].isin(manifest.patients)]
    table, test = split_table(table, config.settings)
    n = len(table)
    n_test = int(table["center"].astype(str).isin(test).sum())
    factor = cpu_factor() if probe else 1.0
    needs_probe = config.task("survival")["enabled"] or (
        config.task("lnm")["enabled"] and "tumour" in config.task("lnm")["features"])
    per_scan = radiomics_probe(manifest, config.settings["radiomics"]["params"]) if probe and needs_probe else None
    workers = config.settings["radiomics"]["workers"] or os.cpu_count() or 1
    out = []
    for task in config.enabled_tasks:
        t = config.task(task)
        if task == "segmentation":
            seconds, basis = _seg(t, n - n_test, n_test)
        elif task == "tstage_binary":
            seconds, basis = _tstage(t, n)
        elif task == "tstage_4class":
            seconds, basis = _tstage4(t, n)
        elif task == "lnm":
            seconds, basis = _lnm(t, n, per_scan)
        else:
            seconds, basis = _survival(t, n, per_scan, workers)
        out.append(TaskEstimate(task, seconds * factor, basis))
    return out, factor


def format_estimates(estimates: list[TaskEstimate], factor: float) -> str:
    """The table `esoct run --check` prints."""
    def human(s: float) -> str:
        return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"

    lines = [f"estimated wall time on this machine (planning figure, within about x1.5; CPU probe {factor:.2f} x "
             f"the reference {REFERENCE_MACHINE}):"]
    for e in estimates:
        lines.append(f"  {e.task:<14} {human(e.seconds):>8}   {e.basis}")
    lines.append(f"  {'total':<14} {human(sum(e.seconds for e in estimates)):>8}")
    return "\n".join(lines)
