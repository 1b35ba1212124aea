"""cnnkit.inspect: receptive-field arithmetic, views against real activations, Grad-CAM sanity,
colour maps, charts (labels in full and apart), drawings and the `cnnkit inspect` command's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from cnnkit.inspect import colours, draw, figures
from cnnkit.inspect.gradcam import gradcam
from cnnkit.inspect.invariance import dataset_invariance, image_invariance, shift
from cnnkit.inspect.patches import top_patches
from cnnkit.inspect.receptive import input_box, jump_offset, plan_steps, unit_window
from cnnkit.inspect.views import feature_maps, filters
from cnnkit.network import build, feature_layers
from cnnkit.plan import plan
from cnnkit.presets import PRESETS, get
from cnnkit.spec import parse


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1]: the hand-built models' preprocessing."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2) / 255


def no_hooks(model: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


# ----------------------------------------------------------------------------- receptive fields


@pytest.mark.parametrize(
    ("steps", "index", "expected"),
    [
        ([(5, 1, 0)], 0, (0, 5)),
        ([(5, 1, 0)], 7, (7, 5)),
        ([(3, 1, 1)], 0, (-1, 3)),  # same padding: the first window starts in the padding
        ([(5, 1, 0), (2, 2, 0)], 3, (6, 6)),  # LeNet pool1
        ([(5, 1, 0), (2, 2, 0), (5, 1, 0)], 3, (6, 14)),  # LeNet conv2
        ([(3, 2, 0), (3, 2, 1)], 2, (6, 7)),  # (2*2 - 1)*2 - 0 = 6; size (3-1)*2 + 3 = 7
        ([(3, 1, 1), (2, 2, 0), (3, 1, 1)], 0, (-3, 8)),  # digits conv2
    ],
)
def test_unit_window_table(steps, index, expected):
    assert unit_window(steps, index) == expected


@pytest.mark.parametrize("preset", list(PRESETS))
def test_window_composition_agrees_with_the_planner(preset):
    network_plan = plan(get(preset))
    for layer in network_plan.layers:
        if layer.flat:
            break
        rows, cols = plan_steps(network_plan, layer.name)
        jump_h, _, size_h = jump_offset(rows)
        jump_w, _, size_w = jump_offset(cols)
        assert (size_h, size_w) == layer.receptive_field, layer.name
        assert (jump_h, jump_w) == layer.jump, layer.name


@pytest.mark.parametrize(
    "notation",
    [
        "21x21x1 > conv 1@3x3 s2 same > avgpool 2 same > conv 1@3x3 p1 > conv 1@2x2 s2 valid",
        "20x18x1 > conv 1@4x2 s2 same > avgpool 3 s1 p1 > conv 1@3x3 s2 valid",
        "11x12x1 > res 1 s2 > res 1",
    ],
)
def test_input_box_is_the_support_of_the_unit_gradient(notation):
    """Reference: with positive weights, an output unit's input gradient is non-zero exactly on
    its window clipped to the image."""
    model = build(parse(notation), seed=0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    model.eval()
    network_plan = model.plan
    last = network_plan.layers[-1]
    height, width, _ = network_plan.input_shape
    for row in range(last.output_shape[0]):
        for col in range(last.output_shape[1]):
            x = torch.ones(1, 1, height, width, dtype=torch.float64, requires_grad=True)
            model(x)[0, 0, row, col].backward()
            support = x.grad[0, 0].abs() > 0
            top, left, h, w = input_box(network_plan, last.name, row, col)
            expected = torch.zeros_like(support)
            expected[max(top, 0) : top + h, max(left, 0) : left + w] = True
            assert torch.equal(support, expected), (row, col, (top, left, h, w))


# ----------------------------------------------------------------------------- views


@pytest.mark.parametrize("preset", ["lenet5", "digits", "inception-demo", "tinyvgg"])
def test_feature_maps_equal_the_modules_outputs(preset):
    model = build(preset, seed=1).eval()
    h, w, c = model.plan.input_shape
    x = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0))
    seen = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
        for name, module in feature_layers(model)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    maps = feature_maps(model, x, max_channels=16)
    assert [m.name for m in maps] == list(seen)
    for fmap in maps:
        np.testing.assert_allclose(fmap.activations, seen[fmap.name][0].numpy(), rtol=0, atol=1e-6)
        assert fmap.label == f"{fmap.name} " + "x".join(
            map(str, model.plan.layer(fmap.name).output_shape)
        )
        assert len(fmap.shown) == min(16, len(fmap.activations))
        if not fmap.all_shown:  # the strongest channels, strongest first
            order = np.sort(fmap.strength)[::-1][:16]
            np.testing.assert_allclose(fmap.strength[fmap.shown], order)
    assert no_hooks(model)


def test_filters_are_the_first_conv_weights_and_every_conv_norm():
    model = build("lenet5", seed=2)
    result = filters(model)
    assert result.layer == "conv1"
    np.testing.assert_array_equal(result.weights, model.conv1.weight.detach().numpy())
    assert list(result.norms) == ["conv1", "conv2"]
    np.testing.assert_allclose(
        result.norms["conv2"], model.conv2.weight.detach().flatten(1).norm(dim=1).numpy(), rtol=1e-6
    )


def bar_data(count: int, seed: int) -> np.ndarray:
    """28x28 faint noise, each with one bright vertical bar 1 px wide and 3 px long."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (count, 28, 28, 1)).astype(np.uint8)
    for image in images:
        row, col = rng.integers(0, 26), rng.integers(0, 28)
        image[row : row + 3, col] = 255
    return images


def test_top_patches_of_a_bar_detector_contain_the_bar_centred():
    model = build("28x28x1 > conv 1@3x3 > relu > maxpool 2 > conv 1@3x3 > relu > flatten > fc 2")
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor([[-1.0, 2.0, -1.0]] * 3)[None, None])
        model.conv1.bias.zero_()
        model.conv2.weight.zero_()
        model.conv2.weight[0, 0, 1, 1] = 1.0  # passes the pooled bar response through
        model.conv2.bias.zero_()
    images = bar_data(400, seed=0)
    layers = top_patches(model, images, to_tensor, channels=1, k=9)
    conv1, conv2 = layers
    assert conv1.crops.shape == (1, 9, 3, 3, 1) and conv2.crops.shape == (1, 9, 8, 8, 1)
    for crop in conv1.crops[0, :, :, :, 0]:  # the bar fills the centre column exactly
        assert (crop[:, 1] == 255).all() and (crop[:, [0, 2]] < 40).all()
    for crop, hit in zip(conv2.crops[0, :, :, :, 0], conv2.hits[0], strict=True):
        columns = np.flatnonzero((crop == 255).sum(axis=0) == 3)
        rows = np.flatnonzero((crop == 255).any(axis=1))
        assert len(columns) == 1, hit  # the whole bar is inside the 8x8 window
        assert abs(columns[0] - 3.5) <= 1.5 and abs(rows.mean() - 3.5) <= 1.5, hit
    assert no_hooks(model)


def test_top_patches_of_no_images_and_a_figure_without_crops_are_one_line_errors():
    from cnnkit.errors import ConfigError

    model = build("28x28x1 > conv 1@3x3 > relu > flatten > fc 2")
    with pytest.raises(ConfigError, match=r"top_patches needs at least one image, got 0$"):
        top_patches(model, np.zeros((0, 28, 28, 1), np.uint8), to_tensor)
    (layer,) = top_patches(model, bar_data(3, seed=0), to_tensor, channels=1, k=2)
    layer.crops = None
    with pytest.raises(ConfigError, match=r"^conv1: no crops to draw; build the patches with"):
        figures.patches_figure([layer])


# ----------------------------------------------------------------------------- Grad-CAM

PATTERN = 5
CROSS = np.zeros((PATTERN, PATTERN))
CROSS[2, :] = CROSS[:, 2] = 1
SQUARE = np.zeros((PATTERN, PATTERN))
SQUARE[[0, -1], :] = SQUARE[:, [0, -1]] = 1


def pattern_data(count: int, rng: np.random.Generator, classes: int = 3):
    """Noise in [0, 0.35] with a cross (class 0) or a square outline (class 1) at a random place.

    Class 2 is noise alone: without it the net may learn 'square or not', and the cross class
    would have no evidence of its own to localise. Test sets use classes=2 (a pattern each).
    """
    x = rng.uniform(0, 0.35, (count, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, classes, count)
    where = rng.integers(0, 28 - PATTERN + 1, (count, 2))
    for i, (row, col) in enumerate(where):
        if y[i] < 2:
            x[i, 0, row : row + PATTERN, col : col + PATTERN] = (CROSS, SQUARE)[y[i]]
    return torch.from_numpy(x), torch.from_numpy(y), where


MARGIN = 2  # px around the 5x5 box: the map is bilinear between cells 2 px apart (jump 2)


def peak_in_box_rate(model, x, where) -> float:
    hits = 0
    for i in range(len(x)):
        row, col = gradcam(model, x[i : i + 1]).peak
        top, left = where[i]
        inside_rows = top - MARGIN <= row <= top + PATTERN - 1 + MARGIN
        hits += inside_rows and left - MARGIN <= col <= left + PATTERN - 1 + MARGIN
    return hits / len(x)


@pytest.mark.slow
def test_gradcam_finds_the_pattern_that_decides_the_class():
    torch.manual_seed(0)
    spec = "28x28x1 > conv 8@3x3 same > relu > maxpool 2 > conv 16@3x3 same > relu > gap > fc 3"
    x_test, y_test, where = pattern_data(100, np.random.default_rng(1), classes=2)
    untrained = build(spec, seed=0)
    assert peak_in_box_rate(untrained, x_test, where) < 0.9
    model = build(spec, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(250):
        x, y, _ = pattern_data(32, rng)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(x_test).argmax(1) == y_test).float().mean() >= 0.95
    assert gradcam(model, x_test[:1]).layer == "relu2"  # the last layer with spatial extent
    assert peak_in_box_rate(model, x_test, where) >= 0.9
    assert no_hooks(model)


def test_gradcam_hooks_are_removed_also_after_an_error():
    model = build("lenet5", seed=0)
    x = torch.randn(1, 1, 32, 32)
    result = gradcam(model, x)
    assert (
        result.layer == "pool2"
        and result.cam.shape == (32, 32)
        and result.saliency.shape == (32, 32)
    )
    assert result.cam.min() >= 0 and np.isclose(result.probabilities.sum(), 1)
    with pytest.raises(Exception, match="out of range"):
        gradcam(model, x, target=10)
    assert no_hooks(model)
    again = gradcam(model, x)  # nothing carried over from the calls before
    np.testing.assert_allclose(again.cam, result.cam)
    assert gradcam(model, x, layer="conv2").cam_cells.shape == (10, 10)


# ----------------------------------------------------------------------------- invariance


def test_shift_moves_pixels_and_fills_with_zero():
    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1) + 1
    moved = shift(image, 1, -2)[0, :, :, 0]
    assert (moved[0] == 0).all() and (moved[:, 2:] == 0).all()
    assert moved[1, 0] == image[0, 0, 2, 0]


def test_invariance_grids():
    model = build("28x28x1 > conv 4@3x3 same > relu > gap > fc 3", seed=0)
    images = bar_data(20, seed=1)
    grid = image_invariance(model, images[0], to_tensor, k=2)
    assert grid.probability.shape == (5, 5) and grid.agree[2, 2]
    with torch.no_grad():
        p = torch.softmax(model(to_tensor(shift(images[:1], -1, 2))), 1)[0, grid.target]
    assert np.isclose(grid.probability[1, 4], float(p))
    labels = np.zeros(20, dtype=np.int64)
    accuracy = dataset_invariance(model, images, labels, to_tensor, k=2)
    assert accuracy.along_x.shape == (5,) and accuracy.along_x[2] == accuracy.along_y[2]


# ----------------------------------------------------------------------------- drawing


def test_colour_maps_are_the_documented_ones():
    # RdBu_r's ends and its middle near-white at 0 (matplotlib's, as the page draws them).
    assert tuple(draw.diverging(np.array([0.0]), 1.0)[0]) == (247, 246, 246)
    assert tuple(draw.diverging(np.array([-1.0]), 1.0)[0]) == (5, 48, 97)
    assert tuple(draw.diverging(np.array([1.0]), 1.0)[0]) == (103, 0, 31)
    assert tuple(draw.sequential(np.array([0.0]), 0, 1)[0]) == (0, 0, 4)
    assert tuple(draw.sequential(np.array([1.0]), 0, 1)[0]) == (252, 255, 164)
    inner = draw.sequential(np.array([0.25, 0.5, 0.75]), 0, 1).astype(int)  # between entries
    np.testing.assert_allclose(inner, [(87, 16, 110), (188, 55, 84), (249, 142, 9)], atol=2)
    assert draw.sequential is colours.non_negative and draw.diverging is colours.signed


def text_boxes(figure, texts):
    """Pixel boxes of matplotlib texts, the empty ones left out (after figure.canvas.draw())."""
    renderer = figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_text()]


def assert_apart(boxes, figure) -> None:
    """No two boxes overlap, and each lies inside the figure (nothing cut at the edge)."""
    width, height = figure.canvas.get_width_height()
    for box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, box
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)


LONG_NAMES = [f"a rather long class name number {i}" for i in range(100)]
SIGN_NAMES = [f"speed limit {v}" for v in (20, 30, 50, 60, 70, 80, 100, 120)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "names",
    [
        LONG_NAMES,
        LONG_NAMES[:12],
        SIGN_NAMES,
        [str(i) for i in range(10)],
        list(map(str, range(32))),
    ],
)
def test_bar_chart_labels_every_class_in_full_and_apart(names):
    from cnnkit.inspect.charts import bar_chart_figure

    values = np.linspace(0.2, 1.0, len(names))
    figure = bar_chart_figure(names, values, "accuracy per class", "accuracy", x_title="class")
    figure.canvas.draw()  # lays the figure out, as saving it would
    labels = figure.axes[0].get_xticklabels()
    assert [t.get_text().replace("\n", " ") for t in labels] == names  # none cut or skipped
    assert_apart(text_boxes(figure, labels), figure)


@pytest.mark.slow
def test_confusion_matrix_labels_100_classes_apart():
    from cnnkit.inspect.charts import heat_map_figure

    matrix = np.random.default_rng(0).integers(0, 5, (100, 100))
    figure = heat_map_figure(matrix, draw.SEQUENTIAL, 0, 5, 12, LONG_NAMES, LONG_NAMES)
    figure.canvas.draw()
    axes = figure.axes[0]
    assert len(figure.axes) == 2  # the matrix and its colour bar
    for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
        assert [t.get_text() for t in labels] == LONG_NAMES
        assert_apart(text_boxes(figure, labels), figure)


def test_curves_put_the_legend_off_the_data_and_the_error_on_a_log_axis():
    from cnnkit.inspect.charts import line_chart_figure

    error = {
        "train error": ([1, 2, 3], [0.1, 0.01, 0.001]),
        "val error": ([1, 2, 3], [0.2, 0.05, 0.02]),
    }
    figure = line_chart_figure(error, "error rate", "epoch", "error", log_y=True, percent=True)
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    figure.canvas.draw()
    shown = {t.get_text() for t in axes.get_yticklabels() if t.get_text()}
    assert {"0.1%", "1%", "10%"} <= shown
    (legend,) = figure.legends
    figure.canvas.draw()
    legend_box = legend.get_window_extent(figure.canvas.get_renderer())
    assert not legend_box.overlaps(axes.get_window_extent())


def test_captions_wrap_to_their_column_and_keep_every_character():
    caption = "class_with_a_very_long_name_7 0.93\ntrue another very long class name"
    lines = draw.wrap(caption, 110, 13)
    assert all(draw.text_size(line, 13)[0] <= 110 for line in lines) and len(lines) > 2
    assert "".join(lines).replace(" ", "") == caption.replace("\n", "").replace(" ", "")
    tiles = [draw.tile(np.full((8, 8), 200, np.uint8), 84)] * 3
    picture = draw.grid(tiles, 3, [caption] * 3, caption_width=110)
    assert picture.width <= 3 * (110 + 2) + 2 * 10  # columns as wide as the wrap, not the text


def test_importing_the_drawing_modules_does_not_import_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, cnnkit.inspect.draw, cnnkit.inspect.plots, cnnkit.inspect.colours; "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def real_picture(image: Image.Image, min_size: tuple[int, int]) -> None:
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.width >= min_size[0] and image.height >= min_size[1]
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not blank, not one colour


@pytest.mark.slow
def test_figures_are_real_pictures():
    model = build("lenet5", seed=0)
    images = np.pad(bar_data(50, seed=2), ((0, 0), (2, 2), (2, 2), (0, 0)))
    x = to_tensor(images[:1])
    real_picture(figures.filters_figure(filters(model)), (300, 200))
    real_picture(figures.features_figure(images[0], feature_maps(model, x)), (400, 400))
    real_picture(figures.gradcam_figure(images[0], gradcam(model, x)), (600, 200))
    real_picture(
        figures.patches_figure(top_patches(model, images, to_tensor, channels=2)), (300, 200)
    )
    real_picture(
        figures.invariance_figure(image_invariance(model, images[0], to_tensor, 3)), (300, 300)
    )
    rgb = build("tinyvgg", seed=0)
    filters_rgb = figures.filters_figure(filters(rgb))
    real_picture(filters_rgb, (300, 200))
    pixels = np.asarray(filters_rgb).reshape(-1, 3).astype(int)
    assert (np.ptp(pixels, axis=1) > 30).any()  # RGB filters are drawn in colour


def test_grayscale_filter_of_zeros_is_white():
    model = build("28x28x1 > conv 2@5x5 > relu > flatten > fc 2", seed=0)
    with torch.no_grad():
        model.conv1.weight[1] = 0
    tiles = draw.diverging(filters(model).weights[1, 0], 1.0)
    assert (tiles == (247, 246, 246)).all()  # RdBu_r's middle: the white of the signed map


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Two small runs trained briefly on mnist-mini, plus one with no conv layer."""
    from cnnkit.data import open_source
    from cnnkit.runs import append_metrics, make_manifest, save_model

    root = tmp_path_factory.mktemp("runs")
    data = open_source("mnist-mini").splits["train"]
    out = {}
    specs = {
        "small": "28x28x1 > conv 6@5x5 > relu > maxpool 2 > conv 12@5x5 > relu > maxpool 2 > flatten > fc 10",
        "dense": "28x28x1 > flatten > fc 10",
    }
    for name, notation in specs.items():
        spec = parse(notation)
        model = build(spec, seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        generator = torch.Generator().manual_seed(0)
        for _ in range(60):
            pick = torch.randint(0, len(data), (64,), generator=generator).numpy()
            x = (to_tensor(data.images[pick]) - 0.1307) / 0.3081
            loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(data.labels[pick]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        run = root / name
        run.mkdir()
        manifest = make_manifest(
            spec,
            [str(i) for i in range(10)],
            [0.1307],
            [0.3081],
            train_config={"data": "mnist-mini"},
        )
        save_model(run, model.eval(), manifest)
        for epoch in (1, 2):
            append_metrics(
                run,
                {
                    "epoch": epoch,
                    "step": 30 * epoch,
                    "elapsed_s": epoch,
                    "train_loss": 1.0 / epoch,
                    "train_acc": 0.5 + 0.2 * epoch,
                    "val_loss": 1.1 / epoch,
                    "val_acc": 0.45 + 0.2 * epoch,
                    "lr": 0.05,
                },
            )
        out[name] = run
    return out


@pytest.mark.slow
def test_inspect_writes_every_view(runs, tmp_path, capsys):
    image = tmp_path / "digit.png"
    Image.fromarray(bar_data(1, 3)[0, :, :, 0]).save(image)
    out = tmp_path / "views"
    code = main(
        [
            "inspect",
            str(runs["small"]),
            "--image",
            str(image),
            "--images",
            "500",
            "--out",
            str(out),
            "--data",
            "mnist-mini",
        ]
    )
    assert code == 0, capsys.readouterr().err
    for name in ("filters", "features", "gradcam", "patches", "invariance", "invariance_data"):
        real_picture(Image.open(out / f"{name}.png").convert("RGB"), (200, 150))
        assert json.loads((out / f"{name}.json").read_text())
    patches = json.loads((out / "patches.json").read_text())
    assert patches["images"] == 500 and [
        layer["receptive_field"] for layer in patches["layers"]
    ] == [[5, 5], [14, 14]]
    assert "wrote" in capsys.readouterr().out


def test_inspect_a_single_view_with_options(runs, tmp_path, capsys):
    out = tmp_path / "one"
    code = main(
        [
            "inspect",
            str(runs["small"]),
            "--what",
            "gradcam",
            "--layer",
            "conv2",
            "--class",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "gradcam.json").read_text())
    assert result["layer"] == "conv2" and result["target"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["gradcam.json", "gradcam.png"]


def bad_npz(path):
    rng = np.random.default_rng(0)
    np.savez(
        path, x_train=rng.integers(0, 255, (8, 28, 40), dtype=np.uint8), y_train=np.arange(8) % 2
    )
    return path


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("missing run", r"does not exist"),
        ("unreadable image", r"not a recognisable image"),
        (
            "bad layer",
            r"--layer 'conv9' is not a layer; layers with spatial extent are conv1, relu1, pool1, conv2, relu2, pool2",
        ),
        ("bad class", r"--class 10 is out of range; the model has 10 classes, 0..9"),
        ("no conv", r"has no conv layer"),
        ("bad data", r"its images are 28x40x1 but the model takes 28x28x1"),
        ("bad view", r"unknown view\(s\) edges"),
    ],
)
def test_inspect_errors_are_one_line_and_exit_2(case, pattern, runs, tmp_path, capsys):
    run = str(runs["small"])
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"this is not a png at all")
    argv = {
        "missing run": ["inspect", str(tmp_path / "nowhere"), "--what", "filters"],
        "unreadable image": ["inspect", run, "--image", str(garbage), "--what", "features"],
        "bad layer": ["inspect", run, "--what", "gradcam", "--layer", "conv9"],
        "bad class": ["inspect", run, "--what", "gradcam", "--class", "10"],
        "no conv": ["inspect", str(runs["dense"]), "--what", "filters"],
        "bad data": [
            "inspect",
            run,
            "--what",
            "patches",
            "--data",
            str(bad_npz(tmp_path / "wide.npz")),
        ],
        "bad view": ["inspect", run, "--what", "edges"],
    }[case]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit: error: ") and err.count("\n") == 1, err
    assert pytest.importorskip("re").search(pattern, err), err
