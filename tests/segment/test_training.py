import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.io.imageio import write_image  # noqa: E402
from esoct.io.manifest import load_manifest  # noqa: E402
from esoct.io.volume import Volume  # noqa: E402
from esoct.models.unet3d import UNet3D  # noqa: E402
from esoct.segment.data import Augmentation, Case, PatchDataset, Preprocessing, load_case, load_cases  # noqa: E402
from esoct.segment.inference import load_segmenter, predict_volume  # noqa: E402
from esoct.segment.training import TrainingConfig, train_segmentation  # noqa: E402
from esoct.train.device import seed_everything  # noqa: E402

PREP = Preprocessing((2.0, 2.0, 2.0), -100.0, 300.0, 50.0, 100.0)
PATCH = (16, 32, 32)


def sphere_volume(seed=0, shape=(24, 32, 32)):
    """A bright ellipsoid (class 1, +200 HU) in noise (SD 30 HU), 2 mm voxels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    lab = (((z - 12) / 7.0) ** 2 + ((y - 15) / 8.0) ** 2 + ((x - 17) / 8.0) ** 2 < 1).astype(np.uint8)
    hu = (rng.normal(0, 30, shape) + 200 * lab).astype(np.float32)
    return Volume(hu, spacing=(2.0, 2.0, 2.0)), Volume(lab, spacing=(2.0, 2.0, 2.0))


def tiny_net(in_channels=1, n_classes=2):
    seed_everything(0)
    return UNet3D(in_channels, n_classes, channels=(4, 8, 16, 16, 16), strides=(1, 2, 2, 2, (1, 2, 2)))


def sphere_case(seed=0):
    image, labels = sphere_volume(seed)
    return Case(f"s{seed}", PREP.image(image), PREP.labels(labels)), image, labels


def dataset(cases, config, augmentation=None):
    return PatchDataset(cases, PATCH, config.iterations_per_epoch * config.batch_size, augmentation=augmentation,
                        background=PREP.background, seed=config.seed)


def test_training_learns_a_bright_sphere(tmp_path):
    case, image, labels = sphere_case()
    config = TrainingConfig(epochs=5, iterations_per_epoch=6, batch_size=2, learning_rate=1e-2, seed=0)
    result = train_segmentation(tiny_net(), dataset([case], config), tmp_path, config, preprocessing=PREP, progress=True)
    pred, _ = predict_volume(result.segmenter, image, postprocess=False)
    p, g = pred.array == 1, labels.array == 1
    dice = 2 * (p & g).sum() / (p.sum() + g.sum())
    assert dice > 0.8
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["loss"] < history[0]["loss"]
    # cosine decay from the initial rate, one step per epoch
    expected_lr = [1e-2 * (1 + np.cos(np.pi * e / 5)) / 2 for e in range(5)]
    assert [h["lr"] for h in history] == pytest.approx(expected_lr)
    log = (tmp_path / "train.log").read_text()
    assert "epoch 5/5 loss" in log and "start: device cpu" in log
    # on CPU, subnormal floats are flushed to zero (they made late epochs ~3x slower)
    assert torch.tensor([1e-39], dtype=torch.float32).mul(1.0).item() == 0.0
    # the checkpoint rebuilds the same segmenter
    again = load_segmenter(result.checkpoint)
    assert again.patch_size == PATCH and again.preprocessing == PREP
    assert np.array_equal(predict_volume(again, image, postprocess=False)[0].array, pred.array)


def test_resume_equals_uninterrupted_run(tmp_path):
    case, _, _ = sphere_case()
    config = TrainingConfig(epochs=3, iterations_per_epoch=2, batch_size=2, seed=3)
    aug = Augmentation(p_rotation=0.5, p_scaling=0.5)
    full = train_segmentation(tiny_net(), dataset([case], config, aug), tmp_path / "a", config, preprocessing=PREP, progress=False)

    def crash(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_segmentation(tiny_net(), dataset([case], config, aug), tmp_path / "b", config, preprocessing=PREP,
                           progress=False, on_epoch_end=crash)
    torch.manual_seed(12345)  # disturb the global random state: the resumed run must not depend on it
    np.random.seed(999)
    resumed = train_segmentation(tiny_net(), dataset([case], config, aug), tmp_path / "b", config, preprocessing=PREP, progress=False)
    assert resumed.resumed_from == 1
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    a, b = full.segmenter.model.state_dict(), resumed.segmenter.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "resume after epoch 1 of 3" in (tmp_path / "b" / "train.log").read_text()
    # another setting in the same folder is refused, not silently mixed
    other = TrainingConfig(epochs=3, iterations_per_epoch=2, batch_size=2, seed=3, learning_rate=5e-4)
    with pytest.raises(InputError, match="multiple of"):
        bad = PatchDataset([case], (16, 24, 24), 2)
        train_segmentation(tiny_net(), bad, tmp_path / "c", config, preprocessing=PREP, progress=False)
    with pytest.raises(InputError, match="learning_rate"):
        train_segmentation(tiny_net(), dataset([case], other), tmp_path / "b", other, preprocessing=PREP, progress=False)


def test_patches_are_seeded_and_foreground_biased():
    case, _, _ = sphere_case()
    ds = PatchDataset([case], PATCH, 12, foreground_fraction=1.0, augmentation=Augmentation(), seed=5)
    first = [ds[i] for i in range(12)]
    assert all(item["foreground"] and item["label"].sum() > 0 for item in first)
    assert first[0]["image"].shape == (1, *PATCH) and first[0]["label"].dtype == torch.int64
    assert torch.equal(ds[4]["image"], first[4]["image"])  # a pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[4]["image"], first[4]["image"])
    none = PatchDataset([case], PATCH, 30, foreground_fraction=0.0, seed=5)
    assert not any(none[i]["foreground"] for i in range(30))
    third = PatchDataset([case], PATCH, 300, seed=5)
    share = np.mean([third[i]["foreground"] for i in range(300)])
    assert 0.25 < share < 0.42
    # a volume smaller than the patch is padded: image with the normalised clip_low, labels with 0
    small = Case("t", case.image.crop((8, 8, 8), (6, 10, 10)), case.labels.crop((8, 8, 8), (6, 10, 10)))
    item = PatchDataset([small], PATCH, 1, background=PREP.background)[0]
    assert item["image"].shape == (1, *PATCH)
    inside = small.image.array[small.image.array != PREP.background]
    padded = item["image"].numpy()
    assert (padded != PREP.background).sum() == inside.size  # the 6 x 10 x 10 voxels, padding around
    assert np.array_equal(np.sort(padded[padded != PREP.background]), np.sort(inside))
    assert item["label"].sum() == (small.labels.array == 1).sum()
    # extra channels (cascade) travel with the image
    extra = Case("e", case.image, case.labels, np.zeros((2, *case.image.shape), np.float32))
    assert PatchDataset([extra], PATCH, 1, augmentation=Augmentation())[0]["image"].shape == (3, *PATCH)


def test_augmentation_keeps_labels_on_the_image():
    case, _, _ = sphere_case()
    aug = Augmentation(p_rotation=1.0, p_scaling=1.0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0, p_gamma=0, p_gamma_inverted=0)
    ds = PatchDataset([case], PATCH, 8, foreground_fraction=1.0, augmentation=aug, background=PREP.background, seed=1)
    for i in range(8):
        item = ds[i]
        inside = item["image"][0][item["label"][0] == 1]
        outside = item["image"][0][item["label"][0] == 0]
        assert inside.mean() > outside.mean() + 1.0  # the sphere is +2 SD brighter and stays under its label


def write_case(root, pid, image, labels):
    write_image(image, root / f"{pid}_img.nii.gz")
    write_image(labels, root / f"{pid}_lab.nii.gz")
    return f"{pid},A,{pid}_img.nii.gz,{pid}_lab.nii.gz\n"


def test_load_cases_from_a_manifest_and_bad_input(tmp_path):
    image, labels = sphere_volume()
    bad_labels = labels.with_array(np.where(labels.array == 1, 7, 0).astype(np.uint8))
    shifted = Volume(labels.array, spacing=labels.spacing, origin=(3.0, 0.0, 0.0))
    rows = "patient_id,center,image_pre,mask_pre\n"
    rows += write_case(tmp_path, "P1", image, labels)
    rows += write_case(tmp_path, "P2", image, bad_labels)
    rows += write_case(tmp_path, "P3", image, shifted)
    (tmp_path / "manifest.csv").write_text(rows)
    manifest = load_manifest(tmp_path / "manifest.csv")
    case = load_case(manifest, "P1", Preprocessing((4.0, 4.0, 4.0), -100.0, 300.0, 50.0, 100.0))
    assert case.image.shape == (12, 16, 16) and case.labels.array.dtype == np.uint8
    assert case.image.array.min() == pytest.approx(-1.5)  # (-100 - 50) / 100 after clipping
    with pytest.raises(InputError, match=r"patient P2.*unexpected labels 7"):
        load_case(manifest, "P2", PREP)
    with pytest.raises(InputError, match=r"patient P3.*mask grid differs"):
        load_case(manifest, "P3", PREP)
    cases, failures = load_cases(manifest, ["P1", "P2", "P3"], PREP, progress=False)
    assert [c.patient_id for c in cases] == ["P1"] and sorted(failures) == ["P2", "P3"]
