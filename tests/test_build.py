"""build() against the planner (shapes and parameters at every layer) and padding semantics
against independent references (hand-written TF SAME amounts, brute-force pooling loops)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit.errors import ConfigError, SpecError
from cnnkit.network import build, count_params, feature_layers
from cnnkit.plan import Plan, plan
from cnnkit.presets import PRESETS
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
)

# ----------------------------------------------------------------------------- planner agreement


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors gain nothing from threads, and on a loaded 2-core machine OpenMP waits cost:
    # the 200 random specs took 27 s on two threads and 3 s on one (load average 8).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_shape(output_shape: tuple[int, int, int], flat: bool, batch: int) -> tuple[int, ...]:
    """The planner's (H, W, C) as torch lays it out: (B, N) once flat, else (B, C, H, W)."""
    h, w, c = output_shape
    return (batch, c) if flat else (batch, c, h, w)


def check_against_plan(spec: Spec | str, batch: int = 2) -> None:
    """Forward a random batch; every named child's output shape and parameters match the plan."""
    model = build(spec, seed=0).eval()
    network_plan: Plan = model.plan
    assert [name for name, _ in model.named_children()] == [
        layer.name for layer in network_plan.layers
    ]
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        child.register_forward_hook(
            lambda _module, _inputs, output, name=name: seen.__setitem__(name, tuple(output.shape))
        )
        for name, child in model.named_children()
    ]
    h, w, c = network_plan.input_shape
    with torch.no_grad():
        out = model(torch.randn(batch, c, h, w))
    for hook in hooks:
        hook.remove()
    children = dict(model.named_children())
    for layer in network_plan.layers:
        where = f"{network_plan.spec} :: {layer.name}"
        assert seen[layer.name] == torch_shape(layer.output_shape, layer.flat, batch), where
        assert count_params(children[layer.name]) == layer.params, where
    assert count_params(model) == network_plan.totals["params"]
    if network_plan.layers:
        last = network_plan.layers[-1]
        assert tuple(out.shape) == torch_shape(last.output_shape, last.flat, batch)
    assert torch.isfinite(out).all()  # a padded -inf or a 0/0 mean would show up here


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_match_the_planner(name: str) -> None:
    check_against_plan(name)


def paddings(kernel: tuple[int, int]) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, min(kernel) - 1))


kernels = st.tuples(st.integers(1, 5), st.integers(1, 5))


@st.composite
def conv_layers(draw: st.DrawFn) -> Conv:
    kernel = draw(kernels)
    return Conv(draw(st.integers(1, 6)), kernel, draw(st.integers(1, 3)), draw(paddings(kernel)))


@st.composite
def pool_layers(draw: st.DrawFn) -> Pool:
    kernel = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    op = draw(st.sampled_from(["max", "avg"]))
    return Pool(op, kernel, draw(st.integers(1, 3)), draw(paddings(kernel)))


small = st.integers(1, 4)
activations = st.sampled_from(["relu", "gelu", "tanh", "sigmoid", "softmax"]).map(Activation)
# Convs and pools are repeated so that most draws stay spatial, where the padding cases live.
spatial_layers = st.one_of(
    conv_layers(),
    conv_layers(),
    conv_layers(),
    pool_layers(),
    pool_layers(),
    activations,
    st.sampled_from([BatchNorm(), Dropout(0.5)]),
    st.builds(Inception, small, small, small, small, small, small),
    st.builds(Residual, st.integers(1, 6), st.integers(1, 2)),
    st.sampled_from([Flatten(), GlobalAvgPool()]),
)
flat_layers = st.one_of(
    activations,
    st.sampled_from([BatchNorm(), Dropout(0.5), Flatten()]),
    st.builds(Linear, st.integers(1, 12)),
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """Random specs the planner accepts: each drawn layer is kept only if the plan still works."""
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 4)))
    layers: tuple = ()
    flat = False
    for _ in range(draw(st.integers(1, 8))):
        layer = draw(flat_layers if flat else spatial_layers)
        try:
            flat = plan(Spec(shape, (*layers, layer))).layers[-1].flat
        except SpecError:
            continue  # e.g. a filter larger than its input: draw the next layer instead
        layers = (*layers, layer)
    return Spec(shape, layers)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_specs_match_the_planner(spec: Spec) -> None:
    check_against_plan(spec)


# ----------------------------------------------------------------------------- padding semantics


def tf_same(n: int, f: int, s: int) -> tuple[int, int]:
    """TensorFlow's documented SAME rule, written out here apart from cnnkit.shapes."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + f - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize(
    ("n", "f", "out", "before", "after"),
    [  # stride 2: odd and even inputs, odd and even filters
        (7, 3, 4, 1, 1),
        (8, 3, 4, 0, 1),
        (7, 2, 4, 0, 1),
        (8, 2, 4, 0, 0),
        (5, 5, 3, 2, 2),
        (6, 5, 3, 1, 2),
    ],
)
def test_same_sizes_at_stride_2(n: int, f: int, out: int, before: int, after: int) -> None:
    assert tf_same(n, f, 2) == (before, after)
    model = build(f"{n}x{n + 1}x1 > conv 1@{f}x{f} s2 same > maxpool {f} s2 same")
    w_before, w_after = tf_same(n + 1, f, 2)
    assert model.conv1.pad == (before, after, w_before, w_after)
    out_w = math.ceil((n + 1) / 2)
    conv_out = model.conv1(torch.randn(2, 1, n, n + 1))
    assert conv_out.shape == (2, 1, out, out_w)
    assert model.pool1(conv_out).shape == (2, 1, math.ceil(out / 2), math.ceil(out_w / 2))


@pytest.mark.parametrize(
    ("shape", "kernel", "stride"),
    [
        ((7, 8, 2), (3, 3), 2),
        ((6, 6, 3), (4, 2), 1),
        ((9, 5, 1), (5, 3), 3),
        ((4, 4, 2), (3, 3), 1),
    ],
)
def test_same_conv_matches_manual_pad_then_conv(shape, kernel, stride) -> None:
    h, w, c = shape
    fh, fw = kernel
    model = build(f"{h}x{w}x{c} > conv 3@{fh}x{fw} s{stride} same", seed=1)
    conv = model.conv1
    x = torch.randn(2, c, h, w)
    (top, bottom), (left, right) = tf_same(h, fh, stride), tf_same(w, fw, stride)
    expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, stride)
    torch.testing.assert_close(model(x), expected)
    assert expected.shape[2:] == (math.ceil(h / stride), math.ceil(w / stride))
    assert conv.pad == (top, bottom, left, right) and conv.kernel_size == kernel


def pool_reference(x: torch.Tensor, kernel, stride: int, pads, op: str) -> torch.Tensor:
    """Brute-force pooling over the real pixels of each window (loops, no padding at all)."""
    (fh, fw), (top, bottom, left, right) = kernel, pads
    _, _, h, w = x.shape
    out_h, out_w = (h + top + bottom - fh) // stride + 1, (w + left + right - fw) // stride + 1
    out = torch.empty(x.shape[0], x.shape[1], out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            r0, c0 = i * stride - top, j * stride - left
            window = x[:, :, max(r0, 0) : r0 + fh, max(c0, 0) : c0 + fw]
            assert window.numel() > 0, "a window of padding only"
            out[:, :, i, j] = window.amax((2, 3)) if op == "max" else window.mean((2, 3))
    return out


POOL_CASES = [  # (input H, W, kernel, stride, padding): uneven SAME, pN wider than torch allows
    (7, 6, (3, 3), 2, "same"),
    (6, 6, (2, 2), 2, "same"),
    (5, 5, (2, 4), 1, "same"),
    (8, 7, (4, 4), 3, "same"),
    (6, 5, (3, 3), 2, 2),  # p2 on a 3x3 window: over torch's kernel/2 limit
    (5, 7, (4, 2), 1, 1),
]


def pool_text(kernel, stride, padding) -> str:
    pad = padding if isinstance(padding, str) else f"p{padding}"
    return f"{kernel[0]}x{kernel[1]} s{stride} {pad}"


@pytest.mark.parametrize(("h", "w", "kernel", "stride", "padding"), POOL_CASES)
def test_maxpool_never_picks_padding(h, w, kernel, stride, padding) -> None:
    model = build(f"{h}x{w}x2 > maxpool {pool_text(kernel, stride, padding)}")
    x = -1.0 - torch.rand(2, 2, h, w)  # all negative: a zero pad would win every border window
    out = model(x)
    assert (out < 0).all()
    torch.testing.assert_close(out, pool_reference(x, kernel, stride, model.pool1.pad, "max"))
    assert tuple(out.shape[2:]) == model.plan.layers[0].output_shape[:2]


@pytest.mark.parametrize(("h", "w", "kernel", "stride", "padding"), POOL_CASES)
def test_avgpool_excludes_padding(h, w, kernel, stride, padding) -> None:
    model = build(f"{h}x{w}x2 > avgpool {pool_text(kernel, stride, padding)}")
    ones = model(torch.ones(2, 2, h, w))
    assert torch.equal(ones, torch.ones_like(ones))  # exactly 1, borders included
    x = torch.randn(2, 2, h, w)
    torch.testing.assert_close(model(x), pool_reference(x, kernel, stride, model.pool1.pad, "avg"))


def test_torch_native_pooling_would_disagree() -> None:
    """The reason for the explicit padding: torch's own avg pooling counts zeros by default."""
    model = build("6x6x1 > avgpool 3 s2 p1")
    x = torch.ones(1, 1, 6, 6)
    assert model(x)[0, 0, 0, 0] == 1.0
    assert F.avg_pool2d(x, 3, 2, 1)[0, 0, 0, 0] < 1.0


# ----------------------------------------------------------------------------- blocks


def test_residual_block_structure() -> None:
    model = build("8x8x3 > res 4 s2 > res 4", seed=0).eval()
    projected, identity = model.res1, model.res2
    assert projected.conv1.pad == (0, 1, 0, 1)  # SAME, 3x3, stride 2 on an even input
    assert projected.conv1.bias is None and projected.conv2.bias is None
    assert isinstance(identity.shortcut, torch.nn.Identity)
    x = torch.randn(2, 4, 4, 4)
    with torch.no_grad():  # by hand: relu(bn(conv(relu(bn(conv(x))))) + x)
        main = identity.bn2(identity.conv2(torch.relu(identity.bn1(identity.conv1(x)))))
        torch.testing.assert_close(identity(x), torch.relu(main + x))


def test_inception_matches_a_functional_rewrite() -> None:
    model = build("6x6x3 > inception 2,3>4,1>5,6", seed=0)
    b1, b2, b3, b4 = (model.inception1.get_submodule(f"branch{k}") for k in range(1, 5))
    x = torch.randn(2, 3, 6, 6)

    def conv_relu(x: torch.Tensor, conv: torch.nn.Conv2d, pad: int) -> torch.Tensor:
        assert conv.bias is not None  # every inception conv has a bias, as the planner counts
        return torch.relu(F.conv2d(x, conv.weight, conv.bias, padding=pad))

    pooled = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 1)  # 3x3 s1 SAME
    expected = torch.cat(
        [
            conv_relu(x, b1[0], 0),
            conv_relu(conv_relu(x, b2[0], 0), b2[2], 1),
            conv_relu(conv_relu(x, b3[0], 0), b3[2], 2),
            conv_relu(pooled, b4[1], 0),
        ],
        dim=1,
    )
    assert expected.shape == (2, 2 + 4 + 5 + 6, 6, 6)
    torch.testing.assert_close(model(x), expected)


def test_batch_norm_follows_flatness() -> None:
    model = build("4x4x2 > bn > flatten > bn > fc 3 > bn")
    assert isinstance(model.bn1, torch.nn.BatchNorm2d)
    assert isinstance(model.bn2, torch.nn.BatchNorm1d) and model.bn2.num_features == 32
    assert isinstance(model.bn3, torch.nn.BatchNorm1d) and model.bn3.num_features == 3


def test_softmax_is_over_channels() -> None:
    model = build("3x3x4 > softmax > flatten > fc 5 > softmax")
    inner = model.softmax1(torch.randn(2, 4, 3, 3))
    torch.testing.assert_close(inner.sum(1), torch.ones(2, 3, 3))
    torch.testing.assert_close(model(torch.randn(2, 4, 3, 3)).sum(1), torch.ones(2))


# ----------------------------------------------------------------------------- interface


def test_children_are_named_as_the_plan() -> None:
    model = build("inception-demo")
    assert model.plan.layer("conv1").kernel_size == (3, 3)
    assert dict(model.named_children())["inception2"] is model.inception2
    assert model.spec == model.plan.spec and model.plan.input_shape == (32, 32, 3)
    assert [name for name, _ in feature_layers(model)] == [
        "conv1",
        "pool1",
        "inception1",
        "pool2",
        "inception2",
    ]
    assert count_params(model) == model.plan.totals["params"]


def test_a_slice_keeps_names_and_runs_the_first_layers() -> None:
    model = build("lenet5", seed=0)
    head = model[:3]  # conv1 > relu1 > pool1
    assert [name for name, _ in head.named_children()] == ["conv1", "relu1", "pool1"]
    assert head.plan is None and head.conv1 is model.conv1
    assert head(torch.randn(2, 1, 32, 32)).shape == (2, 6, 14, 14)


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    before = torch.get_rng_state()
    first, second = build("lenet5", seed=7), build("lenet5", seed=7)
    other = build("lenet5", seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, a), b, c in zip(
        first.state_dict().items(),
        second.state_dict().values(),
        other.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name
        if name.endswith("weight"):
            assert not torch.equal(a, c), name


def test_unplannable_specs_raise_spec_error() -> None:
    with pytest.raises(SpecError, match="larger than"):
        build("4x4x1 > conv 2@5x5")
    with pytest.raises(SpecError, match="unknown preset"):
        build("lenet6")
    with pytest.raises(ConfigError, match="seed='7'"):
        build("lenet5", seed="7")  # type: ignore[arg-type]


def test_channels_last_gives_the_same_output() -> None:
    model = build("inception-demo", seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected)


@pytest.mark.slow
def test_compiles_as_one_graph() -> None:
    # fullgraph=True fails on any graph break; the eager backend checks tracing without the
    # minutes of an inductor build on CPU.
    spec = "9x8x2 > conv 4@4x4 s2 same > avgpool 3 s2 same > res 6 s2 > inception 2,2>2,2>2,2 > gap > fc 3"
    model = build(spec, seed=0).eval()
    x = torch.randn(2, 2, 9, 8)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.slow
def test_package_build_stays_the_function_after_any_import():
    # The module is cnnkit.network, so importing it never shadows the cnnkit.build function.
    import subprocess
    import sys

    code = (
        "import cnnkit.train, cnnkit; "
        "a = cnnkit.build('28x28x1 > relu'); b = cnnkit.build('28x28x1 > relu'); "
        "assert callable(cnnkit.build) and type(a).__name__ == 'Network', cnnkit.build"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
