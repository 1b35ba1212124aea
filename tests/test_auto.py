"""Model 'auto': the input, network and recipe chosen from the data; --time, --patience, jitter,
and the warnings at the end of a run that learnt little or learnt its training images by heart.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.data_helpers import make_folder

from cnnkit import presets
from cnnkit.augment import Augment, parse_augment
from cnnkit.cli import main
from cnnkit.data import DeviceLoader, Split
from cnnkit.errors import ConfigError, SpecError
from cnnkit.plan import plan
from cnnkit.train import Hooks, TrainConfig, fit, resume
from cnnkit.train_config import AUTO_TIME_LARGE, auto_input, auto_recipe, ending_warnings

# ----------------------------------------------------------------------------- the family


@pytest.mark.parametrize(
    ("shape", "classes", "stages", "last"),
    [
        # (input, classes) -> pooling stages (halvings while the side is >= 8), last conv width
        ((28, 28, 3), 10, 2, 128),  # 28 -> 14 -> 7
        ((32, 32, 3), 10, 3, 128),  # 32 -> 16 -> 8 -> 4
        ((64, 64, 3), 6, 4, 128),  # 16, 32, 64, 128 then 128 (capped)
        ((96, 96, 3), 43, 4, 256),  # many classes: the cap is 256
    ],
)
def test_auto_family_scales_with_the_input_and_classes(
    shape: tuple[int, int, int], classes: int, stages: int, last: int
) -> None:
    text = presets.auto_notation(shape, classes)
    assert text == presets.auto_notation(shape, classes)  # deterministic
    assert text.count("maxpool 2") == stages
    assert text.endswith(f"conv {last}@3x3 same > bn > relu > gap > fc {classes}")
    network = plan(presets.resolve(presets.auto_name(shape, classes)))
    assert network.input_shape == shape
    assert network.output_shape[-1] == classes
    assert 4 <= min(network.layers[-3].output_shape[:2]) <= 7  # the GAP sees 4x4 to 7x7


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 1), (47, 40, 1)])
def test_auto_family_on_small_grey_inputs_is_digits_widened(shape: tuple[int, int, int]) -> None:
    text = presets.auto_notation(shape, 10)
    widths = presets.SMALL_GREY_WIDTHS
    assert text.count("maxpool 2 > bn > relu") == 3
    assert text.endswith(f"conv {widths[-1]}@3x3 same > maxpool 2 > bn > relu > flatten > fc 10")
    network = plan(presets.resolve(presets.auto_name(shape, 10)))
    assert 3 <= min(network.layers[-3].output_shape[:2]) <= 5  # the flatten sees 3x3 to 5x5
    assert network.output_shape[-1] == 10
    # 48 px and more, or colour: the GAP family
    assert presets.auto_notation((48, 48, 1), 10).endswith("gap > fc 10")


def test_plan_auto_takes_input_and_classes(capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", "auto", "--input", "64x64x3", "--classes", "6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spec: 64x64x3 > conv 16@3x3")
    assert re.search(r"fc1\s+fc\s+6\s", out)
    spec = presets.resolve("auto", input_shape="64x64x3", classes=6)
    assert spec == presets.resolve("auto-64x64x3-c6")


def test_auto_with_one_class_is_refused() -> None:
    with pytest.raises(SpecError, match=r"^--classes must be at least 2 for a classifier, got 1$"):
        presets.resolve("auto", classes=1)


@pytest.mark.parametrize(
    ("have", "folder", "expected"),
    [
        ((64, 64, 3), True, (64, 64, 3)),
        ((64, 64, 4), True, (64, 64, 3)),  # RGBA made RGB
        ((250, 200, 3), True, (96, 96, 3)),  # clamped to 96
        ((12, 12, 1), True, (28, 28, 1)),  # clamped to 28, grey stays grey
        ((30, 50, 3), True, (40, 40, 3)),  # sqrt(30 * 50) = 38.7 -> a multiple of 4
        ((32, 48, 3), False, (32, 48, 3)),  # an array source keeps its own size
        ((120, 120, 1), False, (96, 96, 1)),
    ],
)
def test_auto_input(
    have: tuple[int, int, int], folder: bool, expected: tuple[int, int, int]
) -> None:
    assert auto_input(have, folder) == expected


def test_auto_recipe_flips_photos_and_jitters_only_colour() -> None:
    photos = auto_recipe((64, 64, 3), 324, 6)
    assert photos["augment"] == "crop=6,flip,jitter=0.2"
    assert (photos["batch_size"], photos["lr"], photos["time"]) == (32, 0.1, 60.0)
    assert photos["epochs"] == 300  # 10 steps an epoch: 3,000 steps at most
    fashion = auto_recipe((28, 28, 1), 54_000, 10)
    assert fashion["augment"] == "flip"  # a large set: no crops
    assert (fashion["batch_size"], fashion["lr"]) == (128, 0.4)
    assert (fashion["time"], fashion["epochs"]) == (AUTO_TIME_LARGE, 15)
    TrainConfig(**photos), TrainConfig(**fashion)  # both valid configs


# ----------------------------------------------------------------------------- warnings


def _summary(val: float | None, train: float, steps: int = 100) -> dict:
    return {"final_val_acc": val, "final_train_acc": train, "steps": steps}


def test_a_run_near_chance_is_warned_about_with_the_fix() -> None:
    (warning,) = ending_warnings(_summary(0.1667, 0.2), 6, TrainConfig())
    assert re.match(
        r"validation accuracy 16\.7% is near chance \(1/6 = 16\.7%\); likely cause: only 100 "
        r"steps: train longer with --time SECONDS or --epochs N$",
        warning,
    )
    (warning,) = ending_warnings(_summary(0.1, 0.1, steps=5000), 10, TrainConfig(lr=0.3))
    assert warning.endswith(
        "likely cause: the learning rate or the model: try --lr 0.1 or --model auto"
    )


def test_a_run_far_below_its_training_accuracy_is_warned_about() -> None:
    (warning,) = ending_warnings(_summary(0.6, 0.99), 6, TrainConfig())
    assert warning.startswith("validation accuracy 60.0% is far below training accuracy 99.0%")
    assert "--augment crop=4,flip" in warning and "--patience 5" in warning


@pytest.mark.parametrize(("val", "train"), [(0.9, 0.95), (None, 1.0), (0.26, 0.5)])
def test_good_runs_and_runs_without_validation_get_no_warning(val, train) -> None:
    assert ending_warnings(_summary(val, train), 6, TrainConfig()) == []


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time": 0}, r"^--time must be a positive number of seconds such as 60, got 0$"),
        ({"time": -5.0}, r"^--time must be a positive number of seconds such as 60, got -5.0$"),
        ({"time": float("inf")}, r"^--time must be a positive number of seconds such as 60, got inf$"),
        ({"patience": 0}, r"^--patience must be a whole number >= 1, got 0$"),
        ({"patience": 3, "val": "none"},
         r"^--patience 3 stops on validation accuracy, but --val none holds no images out; "
         r"drop --val none or --patience$"),
        ({"augment": "jitter=1.5"}, r"^augment jitter=1.5 must be a fraction in \[0, 1\)$"),
        ({"augment": "jitter=x"}, r"^--augment 'jitter=x': jitter needs a fraction such as 0.2, got 'x'$"),
    ],
)  # fmt: skip
def test_bad_budget_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time", "0"], r"--time must be a positive number of seconds such as 60, got 0.0"),
        (["--time", "-1"], r"--time must be a positive number of seconds such as 60, got -1.0"),
        (["--patience", "2", "--val", "none"], r"--patience 2 stops on validation accuracy"),
    ],
)
def test_bad_budget_options_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", *args, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.match(f"cnnkit: error: {message}", err), err


# ----------------------------------------------------------------------------- jitter


def _loader(augment: Augment) -> DeviceLoader:
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), np.arange(40) % 4)
    return DeviceLoader(split, batch_size=8, mean=[0.5] * 3, std=[0.25] * 3, augment=augment)


def test_jitter_is_a_pure_function_of_seed_epoch_and_batch() -> None:
    jittered = parse_augment("crop=2,flip,jitter=0.2")
    first = [x for x, _ in _loader(jittered).epoch(3)]
    again = [x for x, _ in _loader(jittered).epoch(3, start_batch=2)]
    assert all(torch.equal(a, b) for a, b in zip(first[2:], again, strict=True))
    plain = [x for x, _ in _loader(parse_augment("crop=2,flip")).epoch(3)]
    # The same crops and flips (jitter draws after them), then brightness and contrast moved.
    for x, y in zip(first, plain, strict=True):
        assert not torch.allclose(x, y)
        scale = (x - x.mean((1, 2, 3), keepdim=True)).std((1, 2, 3)) / (
            y - y.mean((1, 2, 3), keepdim=True)
        ).std((1, 2, 3))
        assert ((scale > 0.79) & (scale < 1.21)).all()  # contrast 1 ± 0.2


# ----------------------------------------------------------------------------- fit with auto


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A colour folder of 2 classes x 16 images, 40x40, whose classes differ in brightness."""
    root = make_folder(
        tmp_path_factory.mktemp("photos"), {"dark": 16, "light": 16}, size=40, channels=3
    )
    for path in (root / "light").iterdir():
        from PIL import Image

        image = np.asarray(Image.open(path)) // 2 + 128
        Image.fromarray(image.astype(np.uint8)).save(path)
    return root


def test_auto_on_a_colour_folder_chooses_its_shape_and_says_so(
    photos: Path, tmp_path: Path
) -> None:
    config = TrainConfig.for_model(
        "auto", data=str(photos), epochs=3, out=str(tmp_path / "run"), device="cpu", quiet=True
    )
    result = fit(config)
    assert result.manifest["input_shape"] == [40, 40, 3]
    saved = result.manifest["train_config"]
    assert saved["model"] == "auto-40x40x3-c2"
    assert saved["epochs"] == 3  # given: kept; the rest from auto_recipe
    assert saved["augment"] == "crop=4,flip,jitter=0.2" and saved["batch_size"] == 7  # 28 images
    assert saved["time"] is None or saved["time"] == 60.0
    assert any(
        note.startswith("model auto: auto-40x40x3-c2 for colour images of 40x40")
        for note in result.notes
    )
    assert "warnings" in result.summary and "warnings" in result.manifest["metrics"]


@pytest.mark.slow
def test_time_sizes_the_run_and_resume_keeps_its_length(photos: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        model="auto-40x40x3-c2", data=str(photos), time=3.0, epochs=50, batch_size=8,
        checkpoint_every=1, eval_every=0.34, out=str(tmp_path / "run"), device="cpu", quiet=True,
    )  # fmt: skip
    planned: list[int] = []

    def stop(record: dict) -> None:
        raise RuntimeError("stop")  # a crash after the first checkpoints

    hooks = Hooks(on_start=lambda start: planned.append(start.total_steps), on_eval=stop)
    with pytest.raises(RuntimeError, match="stop"):
        fit(config, hooks)
    assert 1 <= planned[0] <= 50 * 3  # 28 training images, batch 8: 3 steps an epoch
    result = resume(tmp_path / "run")  # not timed again: the length saved with the state
    assert result.summary["total_steps"] == result.summary["steps"] == planned[0]
    assert (
        result.metrics[-1]["step"] == planned[0]
    )  # the last step is evaluated, in an epoch or not
    notes = fit(dataclasses.replace(config, overwrite=True)).notes
    assert any(re.match(r"--time 3: a step takes \d+ ms here, so [\d,]+ steps", n) for n in notes)


def test_patience_stops_and_keeps_the_best_weights(photos: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        model="auto-40x40x3-c2", data=str(photos), epochs=40, batch_size=8, lr=2.0,
        patience=1, val_split=0.25, out=str(tmp_path / "run"), device="cpu", quiet=True,
    )  # fmt: skip
    result = fit(config)
    summary = result.summary
    assert summary["stopped"] in ("patience", "done")
    assert summary["final_val_acc"] == summary["best_val_acc"]
    if summary["restored_step"] is not None:
        assert summary["restored_step"] == summary["best_step"] < summary["steps"]
    assert result.manifest["metrics"]["final_val_acc"] == summary["best_val_acc"]
    assert (result.run / "state" / "best.safetensors").is_file()  # for a resumed run


def test_bare_train_on_mnist_keeps_the_digits_preset(tmp_path: Path) -> None:
    from cnnkit.train_auto import resolve_auto as _resolve_auto

    config, notes = _resolve_auto(TrainConfig.for_model("auto", data="mnist-mini", out="x"))
    assert (config.model, config.epochs, config.augment, notes) == ("digits", 1, "none", [])
    config, _ = _resolve_auto(TrainConfig.for_model("auto", data="mnist", epochs=2))
    assert (config.model, config.epochs) == ("digits", 2)


def test_the_cli_prints_the_warning_after_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Random images with random labels: nothing to learn, so validation stays near chance.
    root = make_folder(tmp_path / "noise", {"a": 20, "b": 20}, size=28, channels=3)
    args = ["train", "--data", str(root), "--epochs", "1", "--time", "5", "--val-split", "0.5"]
    assert main([*args, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "saved to" in captured.out
    assert re.search(
        r"^warning: validation accuracy \d+\.\d% is near chance \(1/2 = 50\.0%\)",
        captured.err,
        re.M,
    )
