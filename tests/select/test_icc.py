"""ICC against pingouin, the ICC filter's reader-2 handling, and mask perturbations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from esoct.errors import InputError
from esoct.select.icc import ICCFilter, icc, perturbed_masks

# pingouin's row names: old releases "ICC1/ICC2/ICC3", 0.6+ "ICC(1,1)/ICC(A,1)/ICC(C,1)"
PINGOUIN_ROWS = {"ICC(1,1)": ("ICC1", "ICC(1,1)"), "ICC(2,1)": ("ICC2", "ICC(A,1)"), "ICC(3,1)": ("ICC3", "ICC(C,1)")}


def two_readers(n=40, seed=0):
    """Features of decreasing reproducibility: noise sd 0.1, 0.3, 1, 3 (+ a reader bias on b)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n, 4))
    noise_sd = np.array([0.1, 0.3, 1.0, 3.0])
    index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id")
    columns = [
        "original_firstorder_Mean", "original_glcm_Contrast", "original_shape_Sphericity", "wavelet-LLH_ngtdm_Busyness",
    ]
    a = pd.DataFrame(truth + noise_sd * rng.normal(size=(n, 4)), index=index, columns=columns)
    b = pd.DataFrame(truth + noise_sd * rng.normal(size=(n, 4)) + 0.3, index=index, columns=columns)
    return a, b


@pytest.mark.parametrize("kind", ["ICC(1,1)", "ICC(2,1)", "ICC(3,1)"])
def test_icc_equals_pingouin(kind):
    pg = pytest.importorskip("pingouin", reason="pingouin (test-only dependency) is not installed")
    a, b = two_readers()
    ours = icc(a, b, kind=kind)
    long = pd.concat([a.assign(reader="r1"), b.assign(reader="r2")]).reset_index()
    for feature in a.columns:
        table = pg.intraclass_corr(data=long, targets="patient_id", raters="reader", ratings=feature)
        row = table[table["Type"].isin(PINGOUIN_ROWS[kind])]
        assert ours[feature] == pytest.approx(float(row["ICC"].iloc[0]), abs=1e-10)


def test_icc_aligns_dataframes_and_arrays_agree():
    a, b = two_readers()
    shuffled = b.sample(frac=1.0, random_state=0)[b.columns[::-1]]
    np.testing.assert_allclose(icc(a, shuffled), icc(a.to_numpy(), b.to_numpy()), atol=1e-14)


def test_icc_constant_feature_is_nan_and_missing_values_are_dropped_per_feature():
    a, b = two_readers()
    a["const"] = b["const"] = 1.0
    b.iloc[0, 0] = np.nan
    values = icc(a, b)
    assert np.isnan(values["const"])
    expected = icc(a.iloc[1:, [0]], b.iloc[1:, [0]]).iloc[0]
    assert values.iloc[0] == pytest.approx(expected, abs=1e-14)


def test_icc_rejects_different_patients_or_features():
    a, b = two_readers()
    with pytest.raises(InputError, match="different patients.*P000"):
        icc(a, b.rename(index={"P000": "X999"}))
    with pytest.raises(InputError, match="different features.*original_glcm_Contrast"):
        icc(a, b.drop(columns="original_glcm_Contrast"))
    with pytest.raises(InputError, match="unknown ICC kind"):
        icc(a, b, kind="ICC(2,k)")


def test_icc_filter_keeps_reproducible_features():
    a, b = two_readers()
    sel = ICCFilter(threshold=0.8, reader2=b).fit(a)
    np.testing.assert_allclose(sel.scores_, icc(a, b, kind="ICC(3,1)").to_numpy())
    assert list(sel.selected_features_) == ["original_firstorder_Mean", "original_glcm_Contrast"]
    out = sel.set_output(transform="pandas").transform(a)
    assert list(out.columns) == list(sel.get_feature_names_out()) == list(sel.selected_features_)
    assert sel.n_patients_icc_ == len(a)


def test_icc_filter_uses_only_the_fold_patients_and_a_reproducibility_subset():
    a, b = two_readers()
    sel = ICCFilter(reader2=b).fit(a.iloc[:20])
    np.testing.assert_allclose(sel.scores_, icc(a.iloc[:20], b.iloc[:20]).to_numpy())
    subset = ICCFilter(reader2=b.iloc[5:25]).fit(a)  # only 20 patients were read twice
    assert subset.n_patients_icc_ == 20
    np.testing.assert_allclose(subset.scores_, icc(a.iloc[5:25], b.iloc[5:25]).to_numpy())


def test_icc_filter_errors_name_the_problem():
    a, b = two_readers()
    with pytest.raises(InputError, match="needs the second reader"):
        ICCFilter().fit(a)
    with pytest.raises(InputError, match="only 0 of the 40 patients.*P000"):
        ICCFilter(reader2=b.rename(index=lambda p: p.lower())).fit(a)
    with pytest.raises(InputError, match="different features: missing \\[original_glcm_Contrast\\]"):
        ICCFilter(reader2=b.drop(columns="original_glcm_Contrast")).fit(a)
    with pytest.raises(InputError, match="by position"):
        ICCFilter().fit(a.to_numpy()[:10], reader2=b.to_numpy())


def test_icc_filter_in_pipeline_with_clone_and_cross_val_score():
    a, b = two_readers(n=60)
    y = (a.iloc[:, 0] + 0.5 * np.random.default_rng(1).normal(size=len(a)) > 0).astype(int)
    pipe = Pipeline([("icc", ICCFilter(reader2=b)), ("clf", LogisticRegression())])
    scores = cross_val_score(clone(pipe), a, y, cv=3, scoring="roc_auc")
    assert scores.mean() > 0.8
    # the second reading as a fit parameter, split with X by scikit-learn
    fitted = clone(pipe).set_params(icc__reader2=None).fit(a.to_numpy(), y, icc__reader2=b.to_numpy())
    assert fitted.named_steps["icc"].support_.sum() == 2


def cube_mask(shape=(20, 20, 20), lo=5, hi=15):
    mask = np.zeros(shape, dtype=np.uint8)
    mask[lo:hi, lo:hi, lo:hi] = 1
    return mask


def test_perturbed_masks_are_reproducible_and_of_the_documented_kinds():
    mask = cube_mask()
    first = perturbed_masks(mask, seed=7, n=6)
    again = perturbed_masks(mask, seed=7, n=6)
    other = perturbed_masks(mask, seed=8, n=6)
    assert all(np.array_equal(x, z) for x, z in zip(first, again))
    assert not np.array_equal(first[2], other[2])  # contour noise depends on the seed
    volumes = [int(m.sum()) for m in first]
    assert volumes[0] == 8**3 and volumes[1] == 10**3 + 6 * 10**2  # eroded, dilated by 1 voxel
    band = perturbed_masks(mask, seed=7, n=3)[2] ^ (mask > 0)
    assert band.any() and 0.5 < volumes[2] / mask.sum() < 1.5
    assert all(m.dtype == bool and m.shape == mask.shape for m in first)


def test_perturbed_masks_bad_input():
    with pytest.raises(InputError, match="empty"):
        perturbed_masks(np.zeros((5, 5, 5)), seed=0)
    one_voxel = np.zeros((5, 5, 5))
    one_voxel[2, 2, 2] = 1
    with pytest.raises(InputError, match="too small"):
        perturbed_masks(one_voxel, seed=0, kinds=("erode",))
    with pytest.raises(InputError, match="unknown perturbations"):
        perturbed_masks(cube_mask(), seed=0, kinds=("shear",))


def test_icc_filter_with_metadata_routing_in_cross_validation():
    import sklearn

    a, b = two_readers(n=60)
    y = (a.iloc[:, 0] > 0).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline([("icc", ICCFilter().set_fit_request(reader2=True)), ("clf", LogisticRegression())])
        scores = cross_val_score(pipe, a.to_numpy(), y, cv=3, params={"reader2": b.to_numpy()})
    assert np.isfinite(scores).all()


def test_icc_filter_on_delta_features_with_the_readings_given_apart():
    a, b = two_readers()
    delta = pd.DataFrame(np.random.default_rng(5).normal(size=a.shape), index=a.index, columns=a.columns)
    sel = ICCFilter(reader1=a, reader2=b).fit(delta.iloc[:30])
    np.testing.assert_allclose(sel.scores_, icc(a.iloc[:30], b.iloc[:30]).to_numpy())
    with pytest.raises(InputError, match="reader1.*lacks features.*original_glcm_Contrast"):
        ICCFilter(reader1=a.drop(columns="original_glcm_Contrast"), reader2=b).fit(delta)


def test_icc_filter_second_reading_split_per_fold_by_cross_validated_auc():
    from esoct.select.validation import cross_validated_auc

    a, b = two_readers(n=60)
    y = (a.iloc[:, 0] > 0).astype(int).to_numpy()
    pipe = Pipeline([("icc", ICCFilter()), ("clf", LogisticRegression())])
    result = cross_validated_auc(pipe, a.to_numpy(), y, cv=3, fit_params={"icc__reader2": b.to_numpy()})
    assert result.mean_auc > 0.9
