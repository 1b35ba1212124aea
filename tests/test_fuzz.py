"""Fuzzing that stays (issue 11): spec text, spec files, manifests and image bytes, where the only
outcomes allowed are a result or the project's own CnnkitError. Bounded for CI: 100 examples a
test, no example over 2 s; bench/fuzz_cli.py fuzzes the CLI for minutes."""

from __future__ import annotations

import io
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnkit import runs
from cnnkit.data.images import open_image
from cnnkit.errors import CnnkitError
from cnnkit.plan import plan
from cnnkit.spec import KEYWORDS, from_dict, load_text, parse

BOUNDED = settings(
    max_examples=100,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Pieces of real notation, so that examples reach past the first token; and some that broke it.
PIECES = st.sampled_from(
    [*KEYWORDS, ">", " ", "x", "@", "s", "p", "same", "valid", ",", "²", "٣", "0", "1", "7",
     "28x28x1", "6@5x5", "9" * 13, "-", ".", "e", "\n", "nan", "inf", "\x00", "é"]
)  # fmt: skip


def result_or_own_error(call, *args):
    try:
        return call(*args)
    except CnnkitError:
        return None


@BOUNDED
@given(st.lists(PIECES, max_size=40).map(" ".join) | st.text(max_size=200))
def test_notation(text):
    spec = result_or_own_error(parse, text)
    if spec is not None:
        result_or_own_error(plan, spec)


# JSON values, deep and wide: what a YAML or JSON spec file can hold.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(string.printable, max_size=20)
    | st.sampled_from([*KEYWORDS, "type", "filters", "kernel_size", "stride", "padding"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=60,
)
LAYER = st.fixed_dictionaries(
    {"type": st.sampled_from(KEYWORDS)},
    optional={name: SCALARS | VALUES for name in ("filters", "kernel_size", "stride", "out_features", "rate", "padding")},
)  # fmt: skip
SPEC_DOCUMENT = st.fixed_dictionaries(
    {"input": st.lists(st.integers(-3, 10**13), max_size=4) | VALUES, "layers": st.lists(LAYER, max_size=12) | VALUES}
) | VALUES  # fmt: skip


@pytest.mark.slow
@BOUNDED
@given(SPEC_DOCUMENT, st.sampled_from(["json", "yaml"]))
def test_spec_files(document, form):
    import yaml

    try:
        text = json.dumps(document) if form == "json" else yaml.safe_dump(document)
    except (ValueError, yaml.YAMLError):  # NaN in strict JSON; not ours to test
        return
    spec = result_or_own_error(load_text, text)
    if spec is not None:
        result_or_own_error(plan, spec)


@pytest.mark.slow
@BOUNDED
@given(st.integers(1, 5_000), st.sampled_from(["[", "{a: ", "- "]), st.booleans())
def test_deep_spec_files(depth, opener, anchored):
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    if opener == "- ":
        text = "".join(
            " " * i + "- " + ("\n" if i < depth - 1 else "1") for i in range(min(depth, 800))
        )
    else:
        text = "input: " + opener * depth + "1" + closer * depth
    if anchored:
        text = "x: &a [1, 2]\ny: [*a, *a]\n" + ("input: [1]" if opener == "- " else text)
    result_or_own_error(load_text, text)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    from cnnkit.network import build

    path = runs.prepare_run_dir(tmp_path_factory.mktemp("fuzz") / "run")
    spec = "8x8x1 > conv 2@3x3 > relu > flatten > fc 3"
    runs.save_model(
        path, build(spec, seed=0), runs.make_manifest(parse(spec), ["a", "b", "c"], [0.5], [0.25])
    )
    return path, json.loads((path / runs.MANIFEST).read_text())


FIELDS = [
    "spec",
    "class_names",
    "input_shape",
    "preprocessing",
    "weights",
    "format_version",
    "format",
]


@pytest.mark.slow  # 11 s and 8 s of set-up under a loaded machine: the run's torch build
@BOUNDED
@given(st.lists(st.tuples(st.sampled_from(FIELDS + ["mean", "std", "resize"]), VALUES), max_size=3))
def test_manifests(saved_run, changes):
    path, original = saved_run
    document = json.loads(json.dumps(original))
    for field, value in changes:
        if field in ("mean", "std", "resize"):
            if isinstance(document.get("preprocessing"), dict):
                document["preprocessing"][field] = value
        else:
            document[field] = value
    try:
        text = json.dumps(document)
    except ValueError:
        return
    (path / runs.MANIFEST).write_text(text)
    try:
        manifest = result_or_own_error(runs.read_manifest, path)
        if manifest is not None:
            spec = result_or_own_error(from_dict, manifest["spec"])
            if spec is not None:
                result_or_own_error(plan, spec)
    finally:
        (path / runs.MANIFEST).write_text(json.dumps(original))


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((32, 24)).convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


IMAGES = {fmt: encoded(fmt) for fmt in ("PNG", "JPEG")}


@BOUNDED
@given(
    st.sampled_from(sorted(IMAGES)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_image_bytes(fmt, flips, cut):
    data = bytearray(IMAGES[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    image = result_or_own_error(open_image, io.BytesIO(bytes(data[: max(cut, 1)])))
    if image is not None:
        assert image.size[0] > 0 and image.size[1] > 0
