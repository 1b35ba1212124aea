"""`cnnkit export` to ONNX, and prediction from the .onnx file with ONNX Runtime and no torch.

The reference is the PyTorch model of the run: every layer kind is exported and run through
ONNX Runtime, and the two must agree; the torch-free path is run with torch made unimportable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import cnnkit
from cnnkit import runs
from cnnkit.cli import main
from cnnkit.data.loader import normalisation, normalise
from cnnkit.errors import CheckpointError, ConfigError, MissingExtraError
from cnnkit.export import (
    PARITY_TOLERANCE,
    check_parity,
    edge_images,
    export_onnx,
    quantize_int8,
    to_onnx,
)
from cnnkit.network import build
from cnnkit.onnx_runtime import OnnxClassifier, load_onnx, open_session
from cnnkit.predict import Classifier, load
from cnnkit.preprocess import scale_and_bias
from cnnkit.spec import parse
from conftest import REPO

MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
SPEC = "12x12x3 > conv 4@3x3 same > bn > relu > maxpool 2 > flatten > fc 3"
CLASSES = ["cat", "dog", "eel"]


def save_run(path: Path, spec: str = SPEC, classes: list[str] = CLASSES, seed: int = 0) -> Path:
    """A run saved by hand, its batch-norm statistics made non-trivial so they are tested."""
    parsed = parse(spec)
    model = build(parsed, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    channels = parsed.input_shape[2]
    manifest = runs.make_manifest(parsed, classes, MEAN[:channels], STD[:channels])
    runs.save_model(runs.prepare_run_dir(path), model, manifest)
    return path


def pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(run, its model.onnx), exported once for the module."""
    run = save_run(tmp_path_factory.mktemp("export") / "run")
    result = export_onnx(run, images=pixels((40, 12, 12, 3)))
    return run, result.path


# ----------------------------------------------------------------------------- every layer kind

KINDS = {
    "conv-same-stride2": "12x12x3 > conv 4@3x3 s2 same > flatten > fc 3",
    "conv-p1": "12x12x3 > conv 4@5x5 p1 > flatten > fc 3",
    "maxpool-same": "12x12x3 > conv 4@3x3 > maxpool 3 s2 same > flatten > fc 3",
    "avgpool": "12x12x3 > conv 4@3x3 > avgpool 2 > flatten > fc 3",
    "avgpool-same": "12x12x3 > conv 4@3x3 > avgpool 3 s2 same > flatten > fc 3",
    "relu-tanh-sigmoid-gelu": "12x12x3 > conv 4@3x3 > relu > tanh > sigmoid > gelu > flatten > fc 3",
    "bn-2d-and-1d": "12x12x3 > conv 4@3x3 > bn > flatten > fc 6 > bn > fc 3",
    "dropout": "12x12x3 > conv 4@3x3 > dropout 0.5 > flatten > fc 3",
    "gap": "12x12x3 > conv 4@3x3 > gap > fc 3",
    "inception": "12x12x3 > inception 2,2>4,2>2,2 > gap > fc 3",
    "res": "12x12x3 > res 4 > res 8 s2 > gap > fc 3",
    "softmax-head": "12x12x3 > conv 4@3x3 > flatten > fc 3 > softmax",
}


@pytest.mark.slow
@pytest.mark.parametrize("spec", KINDS.values(), ids=KINDS.keys())
def test_every_layer_kind_exports_and_runs_in_onnx_runtime_as_in_torch(tmp_path, spec):
    run = save_run(tmp_path / "run", spec)
    result = export_onnx(run, images=pixels((20, 12, 12, 3)))
    assert result.parity.ok and result.parity.edge_images == 3
    images = pixels((7, 12, 12, 3), seed=1)
    torch_side, onnx_side = load(run), load_onnx(result.path)
    np.testing.assert_allclose(
        onnx_side.log_probabilities(images), torch_side.log_probabilities(images), atol=1e-5
    )


# ----------------------------------------------------------------------------- the file


@pytest.mark.slow
def test_the_file_checks_and_carries_the_preprocessing_and_the_weights_hash(exported):
    run, path = exported
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")  # the batch dimension is dynamic
    meta = {entry.key: json.loads(entry.value) for entry in model.metadata_props}
    manifest = runs.read_manifest(run)
    assert meta["cnnkit.weights_sha256"] == manifest["weights"]["sha256"]
    assert meta["cnnkit.input_shape"] == [12, 12, 3] and meta["cnnkit.channels"] == 3
    assert meta["cnnkit.class_names"] == CLASSES
    assert (meta["cnnkit.mean"], meta["cnnkit.std"]) == (MEAN, STD)
    assert meta["cnnkit.resize"] == "letterbox"
    assert (meta["cnnkit.pad_value"], meta["cnnkit.alpha_background"]) == (0, 255)
    assert load_onnx(path).plan.to_dict() == load(run).model.plan.to_dict()


@pytest.mark.parametrize("batch", [1, 2, 5, 64])
def test_any_batch_size_predicts_as_the_run_does(exported, batch):
    run, path = exported
    images = pixels((batch, 12, 12, 3), seed=batch)
    np.testing.assert_allclose(
        load_onnx(path).log_probabilities(images), load(run).log_probabilities(images), atol=1e-5
    )


def test_preprocessing_is_bitwise_the_training_loaders():
    scale, bias = scale_and_bias(MEAN, STD)
    torch_scale, torch_bias = normalisation(MEAN, STD, "cpu")
    assert np.array_equal(scale, torch_scale.numpy()) and np.array_equal(bias, torch_bias.numpy())
    images = pixels((4, 12, 12, 3))
    expected = normalise(torch.from_numpy(images), torch_scale, torch_bias).permute(0, 3, 1, 2)
    onnx_input = OnnxClassifier.preprocess(_stub(), images)
    assert np.array_equal(onnx_input, expected.numpy())


def _stub():
    class Stub:
        _scale, _bias = scale_and_bias(MEAN, STD)

    return Stub()


def test_images_of_every_kind_predict_the_same_through_both(exported, tmp_path):
    run, path = exported
    rgba = np.zeros((30, 20, 4), np.uint8)
    rgba[5:25, 5:15] = (200, 10, 10, 128)
    files = []
    for name, array in [("gray.png", pixels((40, 40))), ("rgba.png", rgba)]:
        from PIL import Image

        Image.fromarray(array).save(tmp_path / name)
        files.append(str(tmp_path / name))
    inputs = [*files, pixels((12, 12, 3)), pixels((9, 16))]
    expected, got = load(run).predict(inputs, top_k=3), load_onnx(path).predict(inputs, top_k=3)
    for want, have in zip(expected, got, strict=True):
        assert [t["class"] for t in want["top"]] == [t["class"] for t in have["top"]]
        np.testing.assert_allclose(
            [t["prob"] for t in want["top"]], [t["prob"] for t in have["top"]], atol=1e-5
        )


def test_cnnkit_load_dispatches_on_the_suffix(exported):
    run, path = exported
    assert isinstance(cnnkit.load(path), OnnxClassifier)
    assert isinstance(cnnkit.load(run), Classifier)


# ----------------------------------------------------------------------------- without torch

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_the_cli_and_the_api_predict_with_torch_unimportable(exported, tmp_path):
    from PIL import Image

    run, path = exported
    image = tmp_path / "photo.png"
    Image.fromarray(pixels((20, 30, 3))).save(image)
    script = BLOCK_TORCH + textwrap.dedent(
        f"""
        import json
        import cnnkit
        from cnnkit.cli import main
        assert main(["predict", {str(path)!r}, {str(image)!r}, "--json"]) == 0
        result = cnnkit.load({str(path)!r}).predict({str(image)!r}, top_k=3)
        assert "torch" not in sys.modules
        print(json.dumps(result))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip().splitlines()[-1]
    expected = load(run).predict(str(image), top_k=3)
    got = json.loads(printed)
    assert [t["class"] for t in got[0]["top"]] == [t["class"] for t in expected[0]["top"]]


# ----------------------------------------------------------------------------- foreign models


def test_onnx_predictions_carry_the_same_notes_as_the_run(exported):
    run, path = exported
    photo = np.zeros((30, 20), np.uint8)  # grey, 20x30: unlike the 12x12x3 training images
    onnx_result, run_result = load_onnx(path).predict(photo)[0], load(run).predict(photo)[0]
    assert (
        onnx_result["notes"]
        == run_result["notes"]
        == [
            "grayscale, copied into 3 channels for this 12x12x3 model",
            "resized (letterbox) from 20x30 to 12x12 (width x height)",
        ]
    )


@pytest.fixture(scope="module")
def foreign(exported, tmp_path_factory) -> Path:
    """The exported model without its cnnkit metadata, as a model made elsewhere would be."""
    model = onnx.load(exported[1])
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("foreign") / "other.onnx"
    onnx.save(model, path)
    return path


def test_a_foreign_model_needs_input_and_classes(foreign):
    with pytest.raises(ConfigError, match=r"has no cnnkit metadata .* --input 28x28x1 --classes"):
        load_onnx(foreign)
    classifier = load_onnx(foreign, "12x12x3", "a,b,c")
    assert classifier.class_names == ["a", "b", "c"] and classifier.mean == [0.0] * 3
    assert len(classifier.predict(pixels((12, 12, 3)))[0]["top"]) == 3


def test_a_foreign_models_classes_come_from_a_file(foreign, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("x\ny\n\nz\n", encoding="utf-8")
    assert load_onnx(foreign, "12x12x3", str(names)).class_names == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("shape", "classes", "message"),
    [
        ("12x12x3", "a,b", r"--classes gives 2 names but .* outputs 3 classes"),
        ("28x28x1", "a,b,c", r"--input 28x28x1 does not fit .*\(N, C, H, W\)"),
        ("12x12", "a,b,c", r"--input '12x12' is not HxWxC with 1 or 3 channels"),
        ("12x12x3", ",", r"--classes ',' names no classes"),
    ],
)
def test_a_foreign_models_bad_input_or_classes(foreign, shape, classes, message):
    with pytest.raises(ConfigError, match=message):
        load_onnx(foreign, shape, classes)


def test_cli_predict_on_a_foreign_model(foreign, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(pixels((12, 12, 3))).save(tmp_path / "a.png")
    code = main(["predict", str(foreign), str(tmp_path / "a.png")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"^cnnkit: error: .* --input 28x28x1 --classes", err)
    assert err.count("\n") == 1
    args = ["--input", "12x12x3", "--classes", "a,b,c"]
    assert main(["predict", str(foreign), str(tmp_path / "a.png"), *args]) == 0


# ----------------------------------------------------------------------------- bad input


def test_export_refuses_an_existing_file_unless_overwrite(exported):
    run, path = exported
    with pytest.raises(CheckpointError, match=r"model.onnx already exists; pass --overwrite"):
        export_onnx(run)


def test_export_refuses_a_run_without_weights(tmp_path):
    run = save_run(tmp_path / "run")
    (run / runs.WEIGHTS).unlink()
    with pytest.raises(
        CheckpointError, match=r"model.safetensors is missing; the run is incomplete"
    ):
        export_onnx(run)


def test_export_refuses_weights_whose_sha256_does_not_match(tmp_path):
    run = save_run(tmp_path / "run")
    weights = run / runs.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"was modified after cnnkit saved it"):
        export_onnx(run)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"opset": 7}, ConfigError, r"--opset 7 is not supported; give 18 to"),
        ({"quantize": "int4"}, ConfigError, r"--quantize 'int4' is not known"),
        ({"images": np.zeros((2, 8, 8, 1), np.uint8)}, ConfigError, r"parity images must be uint8"),
    ],
)
def test_export_refuses_bad_options(tmp_path, options, error, message):
    run = save_run(tmp_path / "run")
    with pytest.raises(error, match=message):
        export_onnx(run, tmp_path / "m.onnx", **options)


@pytest.mark.slow
def test_a_failed_parity_check_is_an_error_and_writes_nothing(exported, tmp_path, monkeypatch):
    run, _ = exported
    other = load(save_run(tmp_path / "other", seed=1))
    monkeypatch.setattr("cnnkit.export.to_onnx", lambda *_: to_onnx(other.model, other.manifest))
    with pytest.raises(CheckpointError, match=r"does not match PyTorch \(max \|logit diff\|"):
        export_onnx(run, tmp_path / "m.onnx", images=pixels((5, 12, 12, 3)))
    assert not (tmp_path / "m.onnx").exists()


def test_parity_measures_the_difference(exported):
    run, path = exported
    classifier = load(run)
    parity = check_parity(
        classifier.model, path.read_bytes(), pixels((3, 12, 12, 3)), classifier.manifest
    )
    assert parity.images == 3 and parity.max_abs_diff <= PARITY_TOLERANCE
    assert parity.top1_agreement == 1.0
    edges = edge_images((12, 12, 3))
    assert edges[0].max() == 0 and edges[1].min() == 255 and len(np.unique(edges[2])) > 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an onnx file at all", r"is not a loadable ONNX model: corrupt or truncated"),
        (None, r"is not a loadable ONNX model: corrupt or truncated"),  # the first half
    ],
)
def test_a_corrupt_or_truncated_onnx_file_is_one_error(exported, tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    data = exported[1].read_bytes()
    path.write_bytes(content if content is not None else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=message):
        load_onnx(path)


def test_an_operator_onnx_runtime_lacks_is_one_error(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]
    )
    onnx.save(model, tmp_path / "custom.onnx")
    with pytest.raises(CheckpointError, match=r"needs an operator ONNX Runtime .* lacks"):
        load_onnx(tmp_path / "custom.onnx", "4x4x1", "a,b")


def test_a_missing_file_is_one_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist or is not a file"):
        open_session(tmp_path / "nothing.onnx")


@pytest.mark.parametrize(
    ("module", "call", "message"),
    [
        ("onnxruntime", "load", r"onnxruntime package is not installed .* 'cnnkit\[runtime\]'"),
        ("onnx", "export", r"the onnx package is not installed .* 'cnnkit\[export\]'"),
        ("onnxscript", "export", r"onnxscript package is not installed .* 'cnnkit\[export\]'"),
    ],
)
def test_missing_packages_name_the_extra(exported, tmp_path, monkeypatch, module, call, message):
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(MissingExtraError, match=message):
        if call == "load":
            load_onnx(exported[1])
        else:
            export_onnx(exported[0], tmp_path / "m.onnx")


def test_input_and_classes_are_refused_for_a_run(exported, tmp_path, capsys):
    run, _ = exported
    code = main(["predict", str(run), str(tmp_path / "a.png"), "--input", "12x12x3"])
    assert code == 2
    assert "--input and --classes are for an .onnx model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- int8


def test_int8_is_rated_and_refused_when_it_loses_too_much(exported, monkeypatch):
    _, path = exported
    images = pixels((60, 12, 12, 3))
    labels = load_onnx(path).log_probabilities(images).argmax(axis=1)  # fp32 is 100% right
    int8, rating = quantize_int8(path.read_bytes(), images, labels, force=False)
    assert rating.fp32_accuracy == 100.0 and rating.int8_bytes < rating.fp32_bytes
    assert {e.key for e in onnx.load_from_string(int8).metadata_props} >= {"cnnkit.class_names"}
    monkeypatch.setattr("cnnkit.export.MAX_ACCURACY_DROP", -1.0)  # any result is now too much
    with pytest.raises(ConfigError, match=r"int8 loses .* points of accuracy .* pass --force"):
        quantize_int8(path.read_bytes(), images, labels, force=False)
    assert quantize_int8(path.read_bytes(), images, labels, force=True)[1].images == 60


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_export_prints_parity_and_int8_and_the_file_predicts(tmp_path, capsys):
    run = save_run(
        tmp_path / "run", "28x28x1 > conv 2@3x3 > maxpool 4 > flatten > fc 10", [*"0123456789"]
    )
    assert main(["export", str(run), "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^wrote .*model\.int8\.onnx \(\d+\.\d KiB, opset 18, dynamic batch\)$", out, re.M
    )
    assert re.search(
        r"parity with PyTorch on 1,000 images of mnist-mini \(test split\) \+ 3 edge images: "
        r"max \|logit diff\| \S+ \(limit 1e-04\), top-1 agreement 100%",
        out,
    )
    assert re.search(
        r"^int8: accuracy \S+% -> \S+% \([+-]\d+\.\d\d points\) on 2,000 images", out, re.M
    )
    assert main(["export", str(run)]) == 0
    assert main(["export", str(run)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
