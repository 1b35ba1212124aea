"""The planner against the course's worked examples, derived by hand from the formulas."""

from __future__ import annotations

import math

import pytest

from cnnkit.errors import SpecError
from cnnkit.plan import plan, plan_with_notes
from cnnkit.presets import PRESETS, get, resolve
from cnnkit.shapes import output_size, pad_amounts
from cnnkit.spec import parse


def only(text: str):
    """The plan of a one-layer spec."""
    return plan(parse(text)).layers[-1]


# ----------------------------------------------------------------------------- the course's quizzes


def test_conv_shape_and_parameter_sharing_quiz():
    # 32x32x3 input, 20 filters of 8x8, stride 2, padding 1:
    # W_out = floor((32 - 8 + 2*1)/2) + 1 = 14, D_out = K = 20.
    conv = only("32x32x3 > conv 20@8x8 s2 p1")
    assert conv.output_shape == (14, 14, 20)
    # With sharing: (8*8*3 + 1) * 20 = 3,860; without: 3,860 * 14 * 14 = 756,560.
    assert conv.params == (8 * 8 * 3 + 1) * 20 == 3860
    assert conv.params_unshared == 3860 * 14 * 14 == 756560
    assert conv.neurons == 14 * 14 * 20
    assert conv.macs == 14 * 14 * 20 * (8 * 8 * 3)


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        ("same", 16),
        ("valid", 13),
    ],  # SAME: ceil(32/2) = 16; VALID: ceil((32 - 8 + 1)/2) = ceil(12.5) = 13
)
def test_tensorflow_same_and_valid(padding, expected):
    assert only(f"32x32x3 > conv 20@8x8 s2 {padding}").output_shape == (expected, expected, 20)
    formula = math.ceil(32 / 2) if padding == "same" else math.ceil((32 - 8 + 1) / 2)
    assert expected == formula


def test_same_padding_puts_the_extra_pixel_bottom_right():
    # n=5, f=2, s=2: out = ceil(5/2) = 3, total padding = (3-1)*2 + 2 - 5 = 1 -> (0, 1).
    assert pad_amounts(5, 2, 2, "same") == (0, 1)
    layer = only("5x5x1 > conv 1@2x2 s2 same")
    assert layer.padding == (0, 1, 0, 1)
    assert layer.output_shape == (3, 3, 1)


def test_same_keeps_the_size_at_stride_one():
    for f in (1, 2, 3, 4, 5, 7):
        assert output_size(28, f, 1, "same") == 28


def test_pooling_quiz_keeps_depth():
    # 4x4x5 input, 2x2 filter, stride 2: floor((4 - 2)/2) + 1 = 2, depth stays 5.
    pool = only("4x4x5 > maxpool 2")
    assert pool.output_shape == (2, 2, 5)
    assert pool.params == 0
    assert only("4x4x5 > avgpool 2 s1").output_shape == (3, 3, 5)


def test_one_by_one_convolution_mixes_depth_only():
    layer = only("28x28x192 > conv 16@1x1")
    assert layer.output_shape == (28, 28, 16)
    assert layer.params == (192 + 1) * 16
    assert layer.receptive_field == (1, 1)


def test_inception_module_figures():
    # GoogLeNet's 3a: 64, 96>128, 16>32, 32 on 28x28x192 gives 28x28x256.
    layer = only("28x28x192 > inception 64,96>128,16>32,32")
    assert layer.output_shape == (28, 28, 64 + 128 + 32 + 32)
    by_hand = (
        (192 + 1) * 64
        + (192 + 1) * 96
        + (9 * 96 + 1) * 128
        + (192 + 1) * 16
        + (25 * 16 + 1) * 32
        + (192 + 1) * 32
    )
    assert layer.params == by_hand == 163696
    assert layer.receptive_field == (5, 5)
    # The 1x1 reductions are the point: a plain 5x5 conv to 32 would need 25*192*32 weights.
    assert layer.macs < 28 * 28 * (25 * 192 * 32 + 9 * 192 * 128 + 192 * 64 + 192 * 32)


def test_residual_block_figures():
    same = only("8x8x16 > res 16")
    assert same.params == 2 * (9 * 16 * 16 + 2 * 16)  # no projection when depth and size are kept
    down = only("8x8x16 > res 32 s2")
    assert down.output_shape == (4, 4, 32)
    assert down.params == 9 * 16 * 32 + 2 * 32 + 9 * 32 * 32 + 2 * 32 + 16 * 32 + 2 * 32
    assert down.receptive_field == (7, 7)  # 1 + 2*1 + 2*2
    assert down.jump == (2, 2)


def test_lenet5_totals():
    result = plan(get("lenet5"))
    assert [layer.output_shape for layer in result.layers if layer.kind == "conv"] == [
        (28, 28, 6),
        (10, 10, 16),
    ]
    assert result.totals["params"] == 61706  # the classic LeNet-5 figure
    assert result.layer("conv2").receptive_field == (14, 14)  # 5 + (5 - 1) * 2 input pixels
    assert result.layer("pool2").receptive_field == (16, 16)
    assert result.output_shape == (1, 1, 10)


@pytest.mark.parametrize(
    ("text", "shape", "rf", "jump"),
    [
        ("9x9x1 > conv 1@3x3", (7, 7, 1), (3, 3), (1, 1)),
        ("9x9x1 > conv 1@3x3 > conv 1@3x3", (5, 5, 1), (5, 5), (1, 1)),
        ("9x9x1 > conv 1@3x3 s2 > conv 1@3x3", (2, 2, 1), (7, 7), (2, 2)),
        ("9x9x1 > maxpool 2 > conv 1@3x3", (2, 2, 1), (6, 6), (2, 2)),
        ("10x12x2 > conv 4@3x5 s1 same", (10, 12, 4), (3, 5), (1, 1)),
        ("10x10x1 > avgpool 3 s2 same", (5, 5, 1), (3, 3), (2, 2)),
        ("10x10x1 > maxpool 3 s3 p1", (4, 4, 1), (3, 3), (3, 3)),
        ("7x7x3 > gap", (1, 1, 3), None, None),
    ],
)
def test_shapes_and_receptive_fields(text, shape, rf, jump):
    layer = plan(parse(text)).layers[-1]
    assert (layer.output_shape, layer.receptive_field, layer.jump) == (shape, rf, jump)


def test_layer_names_count_per_kind():
    result = plan(
        parse(
            "28x28x1 > conv 4@3x3 > relu > maxpool 2 > conv 4@3x3 > relu > avgpool 2 > flatten > fc 3"
        )
    )
    assert [layer.name for layer in result.layers] == [
        "conv1",
        "relu1",
        "pool1",
        "conv2",
        "relu2",
        "pool2",
        "flatten1",
        "fc1",
    ]


def test_batch_norm_counts_scale_and_shift():
    assert only("8x8x5 > bn").params == 10


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "4x4x1 > conv 1@5x5",
            r"layer 1 'conv 1@5x5 s1 valid': the 5x5 filter is larger than its 4x4 input; use a smaller filter or padding",
        ),
        ("4x4x1 > conv 1@7x7 p1", r"the 7x7 filter is larger than its 4x4 input \(padded to 6x6\)"),
        (
            "28x28x1 > maxpool 2 > maxpool 2 > maxpool 2 > maxpool 2 > maxpool 2 > maxpool 2",
            r"layer 5 'maxpool 2 s2 valid': pooling a 1x1 input does nothing",
        ),
        (
            "8x8x1 > fc 3",
            r"layer 1 'fc 3': fc needs a flat input, but gets 8x8x1; add 'flatten' \(or 'gap'\) before it, or pass --auto-flatten",
        ),
        (
            "8x8x1 > flatten > conv 1@1x1",
            r"layer 2 'conv 1@1x1 s1 valid': needs a spatial HxWxC input, but the input is already flat \(64 values\)",
        ),
        ("40000x40000x1 > conv 2@1x1", r"output 40000x40000x2 is over the 2\^31-element cap"),
    ],
)
def test_plan_errors(text, message):
    with pytest.raises(SpecError, match=message):
        plan(parse(text))


def test_auto_flatten_inserts_flatten_with_a_note():
    result = plan_with_notes(parse("8x8x2 > conv 4@3x3 > fc 3"), flatten=True)
    assert [layer.kind for layer in result.layers] == ["conv", "flatten", "fc"]
    assert result.layers[-1].params == (6 * 6 * 4 + 1) * 3
    assert result.notes == ("layer 2 'fc 3': inserted 'flatten' before it (--auto-flatten)",)


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_plans(name):
    result = plan(get(name))
    assert result.layers[-1].output_shape[2] == 10


def test_preset_overrides():
    spec = resolve("lenet5", input_shape="28x28x3", classes=43)
    result = plan(spec)
    assert spec.input_shape == (28, 28, 3)
    assert result.output_shape == (1, 1, 43)
    assert result.layers[0].params == (5 * 5 * 3 + 1) * 6


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("lenet", {}, r"unknown preset 'lenet'; did you mean 'lenet5'\?"),
        ("lenet5", {"classes": 1}, r"--classes must be at least 2"),
        ("28x28x1 > conv 2@3x3", {"classes": 5}, r"--classes needs a final fc layer to resize"),
        ("lenet5", {"input_shape": "32x32"}, r"input shape '32x32' is malformed"),
        ("missing.yaml", {}, r"spec file 'missing.yaml' does not exist"),
    ],
)
def test_resolve_errors(model, kwargs, message):
    with pytest.raises(SpecError, match=message):
        resolve(model, **kwargs)


def test_resolve_reads_spec_files(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(
        "input: [28, 28, 1]\nlayers:\n  - {type: conv, filters: 4, kernel_size: 3}\n  - {type: relu}\n"
    )
    assert str(resolve(str(path))) == "28x28x1 > conv 4@3x3 s1 valid > relu"
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"input": [28, 28, 1], "layers": [{"type": "conv", "filters": 4, "kernel_size": 3, "groups": 2}]}'
    )
    with pytest.raises(SpecError, match=r"unknown field\(s\) groups"):
        resolve(str(bad))


def test_plan_takes_notation_and_refuses_other_types():
    assert plan("32x32x3 > conv 20@8x8 s2 p1").layers[0].output_shape == (14, 14, 20)
    with pytest.raises(SpecError, match=r"plan\(\) takes a Spec or a spec string .* got NoneType"):
        plan(None)
    with pytest.raises(SpecError, match=r"a spec is a string .* got int"):
        parse(123)
