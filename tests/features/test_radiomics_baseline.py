"""esoct's radiomics extraction equals PyRadiomics' own baseline on its real test cases."""

from __future__ import annotations

import ast
import csv
import math
from pathlib import Path

import pytest

pytest.importorskip("radiomics")

from esoct.features.radiomics import RadiomicsExtractor
from esoct.io.imageio import read_image

CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape", "shape2D")
# PyRadiomics' tests/testUtils.py: a value passes when |1 - value / baseline| < 3 %
# (for a baseline of 0 the value must be exactly 0).
RELATIVE_TOLERANCE = 0.03

# pykwalify (PyRadiomics' parameter validator) uses a deprecated import API
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def read_baseline(path: Path) -> dict:
    """``{test: {"config": {...}, "values": {feature: str}}}`` as PyRadiomics' testUtils reads it."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    tests = rows[0][1:]
    out = {t: {"config": {}, "values": {}} for t in tests}
    for row in rows[1:]:
        part = "config" if "diagnostics" in row[0] else "values"
        for test, cell in zip(tests, row[1:]):
            out[test][part][row[0]] = cell
    return out


def test_config(feature_class: str, config: dict) -> dict:
    """Settings and image types of one baseline column (PyRadiomics' ``getTestConfig``)."""
    settings = ast.literal_eval(config.get("diagnostics_Configuration_Settings", "{}"))
    image_types = ast.literal_eval(config.get("diagnostics_Configuration_EnabledImageTypes", "{}")) or {"Original": {}}
    if feature_class == "shape" and "resegmentRange" in settings:
        settings["resegmentRange"] = None  # PyRadiomics' tests: no resegmentation for shape
    return {"case": config["diagnostics_Configuration_TestCase"], "setting": settings, "imageType": image_types}


test_config.__test__ = False  # a helper, not a test


def scenarios(data: Path):
    """One (feature class, baseline column) per test: every column whose case is one of CASES."""
    for cls in CLASSES:
        path = data / "pyradiomics" / "baseline" / f"baseline_{cls}.csv"
        if not path.is_file():
            continue
        for test, entry in read_baseline(path).items():
            if entry["config"].get("diagnostics_Configuration_TestCase") in CASES:
                yield cls, test


def relative_difference(value: float, baseline: float) -> float:
    """PyRadiomics' ``checkResult`` rule."""
    if baseline == 0.0:
        return 0.0 if value == 0.0 else 1.0
    return abs(1.0 - value / baseline)


@pytest.fixture(scope="module")
def baselines(shared_data) -> dict:
    folder = shared_data / "pyradiomics" / "baseline"
    return {
        cls: read_baseline(folder / f"baseline_{cls}.csv")
        for cls in CLASSES
        if (folder / f"baseline_{cls}.csv").is_file()
    }


@pytest.fixture(scope="module")
def volumes(shared_data) -> dict:
    """Each case read once through esoct's reader (geometry kept)."""
    cache = {}

    def get(case):
        if case not in cache:
            folder = shared_data / "pyradiomics"
            cache[case] = (read_image(folder / f"{case}_image.nrrd"), read_image(folder / f"{case}_label.nrrd"))
        return cache[case]

    return get


def _scenario_list():
    import os

    repo = Path(__file__).resolve().parents[2]
    data = Path(os.environ.get("ESOCT_SHARED_DATA", repo.parent / "shared" / "data"))
    return list(scenarios(data)) if data.is_dir() else [("firstorder", "lung1")]


@pytest.fixture(scope="module")
def extraction(baselines, volumes):
    """Features of one baseline column, extracted once for every class that shares its settings."""
    cache = {}

    def get(feature_class: str, test: str) -> dict:
        config = test_config(feature_class, baselines[feature_class][test]["config"])
        key = (test, repr(config))
        if key not in cache:
            classes = [
                cls
                for cls, table in baselines.items()
                if test in table and test_config(cls, table[test]["config"]) == config
            ]
            params = {
                "setting": config["setting"],
                "imageType": config["imageType"],
                "featureClass": dict.fromkeys(classes),
            }
            image, mask = volumes(config["case"])
            cache[key] = RadiomicsExtractor(params).extract(image, mask, patient=test)
        return cache[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("feature_class,test", _scenario_list(), ids=lambda v: str(v))
def test_matches_pyradiomics_baseline(feature_class, test, baselines, extraction):
    entry = baselines[feature_class][test]
    features = extraction(feature_class, test)

    expected = entry["values"]
    assert expected, f"no baseline values for {feature_class} / {test}"
    bad = []
    for name, text in expected.items():
        assert name in features, f"{test}: {name} not extracted"
        value = features[name]
        assert not math.isnan(value), f"{test}: {name} is NaN"
        diff = relative_difference(value, float(text))
        if diff >= RELATIVE_TOLERANCE:
            bad.append(f"{name}: esoct {value:.6g} vs baseline {float(text):.6g} ({100 * diff:.2f} %)")
    assert not bad, f"{feature_class} / {test}:\n" + "\n".join(bad)
