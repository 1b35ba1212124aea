"""Classifier, `cnnkit predict` and `cnnkit evaluate` on a tiny run saved by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit import runs
from cnnkit.cli import main
from cnnkit.data import DeviceLoader, Split, fit_images
from cnnkit.errors import ConfigError, DataError
from cnnkit.metrics import classification_report
from cnnkit.network import build
from cnnkit.predict import Classifier, load
from cnnkit.render_use import render_evaluation, render_predictions
from cnnkit.spec import parse
from conftest import assert_golden

SPEC = "8x8x3 > conv 4@3x3 same > bn > relu > maxpool 2 > flatten > fc 3"
CLASSES = ["cat", "dog", "eel"]
MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]


def save_run(path: Path, spec: str = SPEC, classes: list[str] = CLASSES) -> Path:
    parsed = parse(spec)
    model = build(parsed, seed=0)
    channels = parsed.input_shape[2]
    manifest = runs.make_manifest(parsed, classes, MEAN[:channels], STD[:channels])
    runs.save_model(runs.prepare_run_dir(path), model, manifest)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("predict") / "run")


@pytest.fixture(scope="module")
def classifier(run: Path) -> Classifier:
    return load(run)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """One file of each awkward kind a user brings."""
    folder = tmp_path_factory.mktemp("images")
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., 0], rgba[:6, :, 3] = 255, 255  # red on top, transparent below
    Image.fromarray(rgba).save(folder / "rgba.png")
    # 600x400 stored with EXIF orientation 6 (rotate 90 degrees clockwise to show):
    # left half white as stored, so the top half is white as shown.
    photo = np.zeros((400, 600, 3), np.uint8)
    photo[:, :300] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(folder / "photo.jpg", quality=90, exif=exif)
    deep = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).astype(np.uint16)
    Image.fromarray(deep).save(folder / "gray16.png")
    (folder / "notes.png").write_text("this is a text file, not a picture\n")
    return {p.stem: p for p in folder.iterdir()}


def reference_probs(classifier: Classifier, pixels: np.ndarray) -> np.ndarray:
    """Softmax of the model on uint8 (N, 8, 8, 3), normalised the textbook way."""
    x = torch.from_numpy(pixels).double() / 255
    x = (x - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64)
    with torch.no_grad():
        logits = classifier.model(x.permute(0, 3, 1, 2).float())
    return torch.softmax(logits.double(), dim=1).numpy()


# ----------------------------------------------------------------------------- Classifier


def test_cnnkit_load_is_the_lazy_entry_point(run: Path):
    loaded = cnnkit.load(run)
    assert isinstance(loaded, Classifier)
    assert loaded.class_names == CLASSES and loaded.input_shape == (8, 8, 3)
    assert not loaded.model.training
    assert loaded.manifest["notation"] == str(parse(SPEC))
    assert "3 classes" in repr(loaded)


def test_probabilities_match_an_independent_forward_pass(classifier: Classifier):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    results = classifier.predict(list(pixels), top_k=3)
    expected = reference_probs(classifier, pixels)
    for result, row in zip(results, expected, strict=True):
        assert result["error"] is None and result["file"] is None
        assert [e["class"] for e in result["top"]] == [CLASSES[i] for i in np.argsort(-row)]
        np.testing.assert_allclose(
            [e["prob"] for e in result["top"]], np.sort(row)[::-1], atol=1e-5
        )


def test_preprocessing_is_the_training_loaders(classifier: Classifier):
    pixels = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    loader = DeviceLoader(
        Split(pixels, np.zeros(4, np.int64)),
        batch_size=4,
        mean=MEAN,
        std=STD,
        shuffle=False,
        drop_last=False,
    )
    x, _ = next(loader.epoch(0))
    assert torch.equal(classifier.preprocess(list(pixels)), x)
    assert classifier.preprocess(pixels).shape == (4, 3, 8, 8)  # a 4-D array is a batch


def test_every_awkward_image_kind_is_predicted(classifier: Classifier, images):
    inputs = [
        images["rgba"],
        str(images["photo"]),
        images["gray16"],
        Image.open(images["rgba"]),
        np.zeros((5, 7), np.uint8),
        np.full((20, 10, 1), 255, np.uint8),
        np.zeros((8, 8, 4), np.uint8),
    ]
    results = classifier.predict(inputs, top_k=2)
    assert [r["error"] for r in results] == [None] * len(inputs)
    assert [r["file"] for r in results[:4]] == [
        str(images[k]) for k in ("rgba", "photo", "gray16", "rgba")
    ]
    assert all(len(r["top"]) == 2 and r["top"][0]["prob"] >= r["top"][1]["prob"] for r in results)


def test_exif_orientation_and_alpha_are_applied(classifier: Classifier, images):
    photo = classifier.prepare(images["photo"])  # shown as 400x600: white top half
    assert photo[1, 4].min() > 200 and photo[6, 4].max() < 50
    rgba = classifier.prepare(images["rgba"])  # transparent bottom half composited on white
    assert tuple(rgba[2, 4]) == (255, 0, 0) and tuple(rgba[6, 4]) == (255, 255, 255)


def test_an_unreadable_file_gets_an_error_and_the_others_still_predictions(
    classifier: Classifier, images
):
    results = classifier.predict([images["rgba"], images["notes"], images["gray16"]])
    assert results[1]["top"] == []
    assert results[1]["error"].startswith(f"{images['notes']}: not a recognisable image")
    assert results[0]["error"] is None and len(results[0]["top"]) == 3
    assert results[2]["error"] is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), r"array of dtype float32: give uint8 pixels 0-255"),
        (np.zeros((8, 8, 5), np.uint8), r"array of shape \(8, 8, 5\) is not an image"),
        (np.zeros((0, 8), np.uint8), r"array of shape \(0, 8\) has no pixels"),
        (object(), r"cannot predict a object; give a file path, a PIL image or a uint8 array"),
        ("missing.png", r"missing\.png: cannot read the file \(No such file or directory\)"),
    ],
)
def test_bad_inputs_become_error_entries(classifier: Classifier, image, message):
    (result,) = classifier.predict([image])
    assert result["top"] == []
    assert re.match(message, result["error"]), result["error"]


def test_top_k_is_clamped_to_the_classes_and_checked(classifier: Classifier):
    (result,) = classifier.predict(np.zeros((8, 8, 3), np.uint8), top_k=10)
    assert len(result["top"]) == 3
    assert sum(e["prob"] for e in result["top"]) == pytest.approx(1.0)
    with pytest.raises(
        ConfigError, match=r"top_k=0 must be a whole number of at least 1, e\.g\. 5"
    ):
        classifier.predict([np.zeros((8, 8), np.uint8)], top_k=0)


def test_a_softmax_head_is_not_softmaxed_twice(tmp_path: Path):
    classifier = load(save_run(tmp_path / "soft", SPEC + " > softmax"))
    pixels = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    with torch.no_grad():
        direct = classifier.model(classifier.preprocess(pixels)).numpy()
    results = classifier.predict(pixels, top_k=3)
    for result, row in zip(results, direct, strict=True):
        np.testing.assert_allclose(
            [e["prob"] for e in result["top"]], np.sort(row)[::-1], atol=1e-5
        )


def test_evaluate_agrees_with_the_report_of_a_direct_forward_pass(classifier: Classifier):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 50)
    probs = reference_probs(classifier, pixels)
    expected = classification_report(labels, probs.argmax(1), probs, CLASSES)
    report = classifier.evaluate(pixels, labels, batch_size=7)  # batches of 7 leave a remainder
    assert report["confusion"] == expected["confusion"]
    assert report["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_evaluate_fits_other_sizes_as_training_does(classifier: Classifier):
    gray = np.random.default_rng(4).integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    fitted = fit_images(gray, (8, 8, 3), "letterbox")
    assert classifier.evaluate(gray, labels) == classifier.evaluate(fitted, labels)
    with pytest.raises(DataError, match=r"6 images but 5 labels; they must pair up"):
        classifier.evaluate(gray, labels[:5])
    with pytest.raises(DataError, match=r"evaluate needs uint8 images \(N, H, W, C\), got float64"):
        classifier.evaluate(gray / 255, labels)


# ----------------------------------------------------------------------------- CLI: predict


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_predict_expands_folders_sorted_and_prints_json(run: Path, tmp_path: Path, capsys):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.png", "sub/c.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name)
    (folder / "readme.txt").write_text("not an image")
    code, out, err = cli(capsys, "predict", str(run), str(folder), "--top-k", "2", "--json")
    assert (code, err) == (0, "")
    results = json.loads(out)
    assert [Path(r["file"]).relative_to(folder).as_posix() for r in results] == [
        "a.png",
        "b.png",
        "sub/c.png",
    ]
    assert all(len(r["top"]) == 2 for r in results)


def test_cli_predict_reports_a_bad_file_and_exits_1(run: Path, images, capsys):
    code, out, err = cli(capsys, "predict", str(run), str(images["notes"]), str(images["photo"]))
    assert code == 1
    assert f"{images['notes']}\n  error: {images['notes']}: not a recognisable image" in out
    assert f"{images['photo']}\n  " in out and "%" in out
    assert err.splitlines() == [
        # The photo is noted once (stderr, with the errors), 600x400 shown upright as 400x600.
        f"note: {images['photo']}: resized (letterbox) from 400x600 to 8x8 (width x height)",
        f"cnnkit: {images['notes']}: not a recognisable image; only PNG, JPEG, BMP, GIF, WEBP are read; convert it to PNG or remove it",
        "cnnkit: 1 of 2 image(s) could not be read",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["predict", "{tmp}/nowhere", "{img}"],
            r"nowhere does not exist; give the folder of a run",
        ),
        (["predict", "{tmp}", "{img}"], r"is not a cnnkit run \(no cnnkit\.json\); train one with"),
        (["predict", "{run}", "{tmp}/empty"], r"empty is a folder without image files \(\.png, "),
        (["predict", "{run}", "{img}", "--top-k", "0"], r"top_k=0 must be a whole number"),
        (["predict", "{run}", "{img}", "--device", "gpu9"], r"--device 'gpu9' is not a device"),
        (["evaluate", "{run}", "--data", "{tmp}/none.npz"], r"--data '.*none\.npz': no such file"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(run, images, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    values = {"tmp": tmp_path, "run": run, "img": images["rgba"]}
    code, out, err = cli(capsys, *(arg.format(**values) for arg in argv))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("cnnkit: error: ")
    assert re.search(message, err), err


# ----------------------------------------------------------------------------- CLI: evaluate


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
        y_train=np.arange(6) % 3,
        x_test=rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8),
        y_test=np.arange(30) % 3,
        class_names=np.array(CLASSES),
    )
    return path


def test_cli_evaluate_json_is_the_classifiers_report_on_the_test_split(
    run, classifier, npz, capsys
):
    code, out, err = cli(capsys, "evaluate", str(run), "--data", str(npz), "--json")
    assert code == 0, err
    document = json.loads(out)
    with np.load(npz) as data:
        expected = classifier.evaluate(data["x_test"], data["y_test"])
    assert document["split"] == "test" and document["count"] == 30
    assert document["confusion"] == expected["confusion"]
    assert document["accuracy"] == pytest.approx(expected["accuracy"])


def test_cli_evaluate_text_has_the_tables(run, npz, capsys):
    code, out, _ = cli(capsys, "evaluate", str(run), "--data", str(npz), "--split", "train")
    assert code == 0
    assert f"data:     {npz} (train split, 6 images)" in out
    for heading in ("accuracy: ", "precision  recall     F1", "confusion matrix (rows: true"):
        assert heading in out


def test_cli_evaluate_matches_classes_by_name(run, tmp_path: Path, capsys):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    # The data names its classes in another order: label 0 is "eel", the run's class 2.
    np.savez(tmp_path / "swapped.npz", x_train=x, y_train=np.array([0, 0, 1, 1]),
             class_names=np.array(["eel", "cat"]))  # fmt: skip
    code, out, _ = cli(
        capsys, "evaluate", str(run), "--data", str(tmp_path / "swapped.npz"), "--json"
    )
    assert code == 0
    assert [c["support"] for c in json.loads(out)["classes"]] == [2, 0, 2]
    np.savez(tmp_path / "alien.npz", x_train=x, y_train=np.array([0, 1, 0, 1]),
             class_names=np.array(["cat", "yak"]))  # fmt: skip
    code, _, err = cli(capsys, "evaluate", str(run), "--data", str(tmp_path / "alien.npz"))
    assert code == 2
    assert err.count("\n") == 1
    assert "class(es) yak are not among the run's classes (cat, dog, eel)" in err


def test_cli_evaluate_refuses_a_missing_split(run, npz, capsys):
    code, _, err = cli(capsys, "evaluate", str(run), "--data", str(npz), "--split", "val")
    assert code == 2
    assert (
        err
        == f"cnnkit: error: --data {npz} has no val split (only train, test); choose one of those with --split\n"
    )


# ----------------------------------------------------------------------------- golden text


def test_golden_evaluate_small():
    y_true = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 1, 0, 1, 2, 1, 2]
    probs = np.full((10, 3), 0.1)
    probs[np.arange(10), y_pred] = 0.8
    report = classification_report(y_true, y_pred, probs, ["cat", "dog", "eel"])
    assert_golden(
        "evaluate_small.txt", render_evaluation(report, "runs/pets", "pets", "test") + "\n"
    )


def test_golden_evaluate_long_names_and_a_train_split_note():
    names = ["airplane", "automobile", "bird"]
    report = classification_report([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], class_names=names)
    text = render_evaluation(report, "runs/c3", "c3", "train", notes=["the data has no test split"])
    assert_golden("evaluate_long_names.txt", text + "\n")


def test_golden_evaluate_many_classes_omits_the_matrix():
    y = np.arange(30) % 25
    report = classification_report(y, (y + (y % 5 == 0)) % 25)
    assert_golden("evaluate_many_classes.txt", render_evaluation(report, "runs/big", "big") + "\n")


def test_golden_predict_mixed():
    results = [
        {"file": "digits/7.png", "top": [{"class": "7", "prob": 0.9731}, {"class": "1", "prob": 0.0212}], "error": None},
        {"file": "digits/bad.png", "top": [], "error": "digits/bad.png: not a recognisable image; convert it to PNG"},
        {"file": None, "top": [{"class": "eight", "prob": 1.0}, {"class": "3", "prob": 0.0}], "error": None},
    ]  # fmt: skip
    assert_golden("predict_mixed.txt", render_predictions(results) + "\n")
