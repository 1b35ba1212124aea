"""The notation and the file form: parsing, round trips, and every error message."""

from __future__ import annotations

import contextlib
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.errors import SpecError
from cnnkit.spec import (
    Activation,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Inception,
    Linear,
    Pool,
    Residual,
    Spec,
    from_dict,
    load_text,
    parse,
    parse_shape,
    to_dict,
    to_notation,
)


def test_parse_reads_every_layer_kind():
    spec = parse(
        " 32x32x3>conv 20@8x8 s2 p1 >relu> maxpool 2 > avgpool 3x2 s1 same > bn > dropout 0.5"
        " > inception 64,96>128,16>32,32 > res 64 s2 > gap > gelu > tanh > sigmoid > flatten > fc 10 > softmax"
    )
    assert spec.input_shape == (32, 32, 3)
    assert spec.layers == (
        Conv(20, (8, 8), 2, 1),
        Activation("relu"),
        Pool("max", (2, 2), 2, "valid"),
        Pool("avg", (3, 2), 1, "same"),
        BatchNorm(),
        Dropout(0.5),
        Inception(64, 96, 128, 16, 32, 32),
        Residual(64, 2),
        GlobalAvgPool(),
        Activation("gelu"),
        Activation("tanh"),
        Activation("sigmoid"),
        Flatten(),
        Linear(10),
        Activation("softmax"),
    )


@pytest.mark.parametrize(
    ("text", "layer"),
    [
        ("conv 6@5x5", Conv(6, (5, 5), 1, "valid")),
        ("conv 6@5", Conv(6, (5, 5), 1, "valid")),
        ("conv 6@3x5 s2 same", Conv(6, (3, 5), 2, "same")),
        ("CONV 6@5x5 VALID", Conv(6, (5, 5), 1, "valid")),
        ("maxpool 3", Pool("max", (3, 3), 3, "valid")),
        ("maxpool 3 s2 p1", Pool("max", (3, 3), 2, 1)),
        ("res 32", Residual(32, 1)),
    ],
)
def test_defaults_and_options(text, layer):
    assert parse(f"28x28x1 > {text}").layers == (layer,)


def test_parse_shape():
    assert parse_shape("28x28x1") == (28, 28, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty spec"),
        ("28x28 > relu", r"input shape '28x28' is malformed \(add the channel count"),
        ("28 by 28 > relu", r"input shape '28 by 28' is malformed: expected HxWxC"),
        ("0x28x1 > relu", r"every size must be at least 1, got 0x28x1"),
        ("65536x65536x1 > relu", r"over the 2\^31 cap"),
        ("28x28x1 > conf 6@5x5", r"layer 1: unknown layer 'conf'; did you mean 'conv'\?"),
        ("28x28x1 > relu > > fc 3", r"layer 2 is empty: remove the extra '>'"),
        ("28x28x1 > conv 6", r"layer 1 'conv 6': '6' is not K@FxF; write it like 'conv 6@5x5'"),
        ("28x28x1 > conv 0@3x3", r"the filter count must be at least 1, got 0"),
        ("28x28x1 > conv 6@0x3", r"the filter size must be at least 1, got 0"),
        (
            "28x28x1 > conv 99999999999@3x3",
            r"the filter count 99,999,999,999 is over the 2\^31 cap",
        ),
        ("28x28x1 > conv 6@3x3 s0", r"stride must be at least 1, got s0"),
        ("28x28x1 > conv 6@3x3 s1 s2", r"unexpected option 's2'"),
        (
            "28x28x1 > conv 6@3x3 p3",
            r"padding p3 is not smaller than the 3x3 filter.*use p2 or less",
        ),
        ("28x28x1 > maxpool 2 p2", r"padding p2 is not smaller than the 2x2 filter"),
        (
            "28x28x1 > conv 6@3x3 bogus",
            r"unexpected option 'bogus'; options are sS \(stride\) and same",
        ),
        ("28x28x1 > res 8 same", r"unexpected option 'same'; options are sS \(stride\)\n"),
        ("28x28x1 > maxpool", r"layer 1 'maxpool': missing its size"),
        ("28x28x1 > dropout 1.0", r"dropout rate must be in \[0, 1\), got 1"),
        ("28x28x1 > dropout -0.1", r"dropout rate must be in \[0, 1\), got -0.1"),
        ("28x28x1 > dropout half", r"'half' is not a rate"),
        ("28x28x1 > dropout", r"expected one number, such as 'dropout 0.5'"),
        ("28x28x1 > fc ten", r"'ten' is not a whole number of outputs"),
        ("28x28x1 > fc 0", r"the output count must be at least 1, got 0"),
        ("28x28x1 > relu 3", r"'relu' takes no options, got '3'"),
        ("28x28x1 > inception 1,2>3", r"expected 'inception A,Br>B,Cr>C,D'"),
        ("28x28x1 > inception 0,2>3,4>5,6", r"a branch width must be at least 1, got 0"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse(text)


def test_unknown_token_has_a_caret_under_it():
    with pytest.raises(SpecError) as info:
        parse("28x28x1 > conv 6@5x5 > rleu")
    message = str(info.value)
    spec_line, caret_line = message.splitlines()[1:]
    start = caret_line.index("^")
    assert spec_line[start : start + caret_line.count("^")] == "rleu"
    assert "did you mean 'relu'?" in message


def test_file_form_matches_the_issue_example():
    spec = load_text(
        "input: [32, 32, 3]\nlayers:\n  - {type: conv, filters: 20, kernel_size: [8, 8], stride: 2, padding: 1}\n"
    )
    assert spec == parse("32x32x3 > conv 20@8x8 s2 p1")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("input: [28, 28, 1\nlayers: []", r"spec file is not valid YAML/JSON at line 2"),
        ('{"input": [28, 28, 1], "layers": [}', r"not valid YAML/JSON"),
        ("- 1\n- 2", r"must hold a mapping with 'input' and 'layers', got list"),
        (
            "input: [28, 28, 1]\nlayers: []\nname: x",
            r"unknown field\(s\) name; allowed are input, layers",
        ),
        (
            "input: [28, 28]\nlayers: []",
            r"'input' must be \[H, W, C\] such as \[28, 28, 1\], got \[28, 28\]",
        ),
        ("input: [28, 28, 1]\nlayers: relu", r"'layers' must be a list"),
        ("input: [28, 28, 1]\nlayers: [relu]", r"layer 1: expected a mapping with a 'type'"),
        (
            "input: [28, 28, 1]\nlayers: [{type: cnov}]",
            r"layer 1: unknown type 'cnov'; did you mean 'conv'\?",
        ),
        (
            "input: [28, 28, 1]\nlayers: [{type: conv, filters: 3, kernel_size: 3, dilation: 2}]",
            r"unknown field\(s\) dilation; allowed are filters, kernel_size, stride, padding",
        ),
        (
            "input: [28, 28, 1]\nlayers: [{type: conv, filters: 3.5, kernel_size: 3}]",
            r"'filters' must be a whole number, got 3.5",
        ),
        (
            "input: [28, 28, 1]\nlayers: [{type: conv, filters: 3, kernel_size: [3]}]",
            r"'kernel_size' must be F or \[Fh, Fw\]",
        ),
        (
            "input: [28, 28, 1]\nlayers: [{type: conv, filters: 3, kernel_size: 3, padding: full}]",
            r"'padding' must be 'same', 'valid' or a number",
        ),
        (
            "input: [28, 28, 1]\nlayers: [{type: dropout, rate: 2}]",
            r"dropout rate must be in \[0, 1\)",
        ),
        (
            "input: [28, 28, 1]\nlayers: [{type: relu, rate: 2}]",
            r"unknown field\(s\) rate; allowed are none",
        ),
    ],
)
def test_file_errors(document, message):
    with pytest.raises(SpecError, match=message):
        load_text(document)


# ----------------------------------------------------------------------------- round trips

windows = st.tuples(st.integers(1, 7), st.integers(1, 7))
paddings = st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 6))


@st.composite
def conv_layers(draw):
    kernel = draw(windows)
    padding = draw(paddings)
    if isinstance(padding, int):
        padding = min(padding, min(kernel) - 1)
    return Conv(draw(st.integers(1, 512)), kernel, draw(st.integers(1, 4)), padding)


@st.composite
def pool_layers(draw):
    kernel = draw(windows)
    padding = draw(paddings)
    if isinstance(padding, int):
        padding = min(padding, min(kernel) - 1)
    return Pool(draw(st.sampled_from(["max", "avg"])), kernel, draw(st.integers(1, 4)), padding)


any_layer = st.one_of(
    conv_layers(),
    pool_layers(),
    st.sampled_from([Activation(f) for f in ("relu", "gelu", "tanh", "sigmoid", "softmax")]),
    st.just(BatchNorm()),
    st.just(Flatten()),
    st.just(GlobalAvgPool()),
    st.builds(Dropout, st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75])),
    st.builds(Linear, st.integers(1, 4096)),
    st.builds(Inception, *[st.integers(1, 64)] * 6),
    st.builds(Residual, st.integers(1, 128), st.integers(1, 3)),
)
specs = st.builds(
    Spec,
    st.tuples(st.integers(1, 256), st.integers(1, 256), st.integers(1, 16)),
    st.lists(any_layer, max_size=12).map(tuple),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(specs)
def test_notation_and_file_forms_round_trip(spec):
    assert parse(to_notation(spec)) == spec
    assert from_dict(to_dict(spec)) == spec
    assert load_text(yaml.safe_dump(to_dict(spec))) == spec
    assert load_text(json.dumps(to_dict(spec))) == spec


alphabet = st.sampled_from(
    list("0123456789x@>,. -spconvmaxpolrfdeugtbnsi")
    + ["conv", "fc", "inception", "same", "res", "\n"]
)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.lists(alphabet, max_size=40).map("".join))
def test_fuzz_parser_gives_a_plan_or_a_spec_error(text):
    from cnnkit.plan import plan

    with contextlib.suppress(SpecError):  # any other exception fails the test
        plan(parse(text))
