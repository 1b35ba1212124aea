"""The serve API's contract: documents, predictions, maps, conv-step numbers, errors, OpenAPI."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import schemathesis
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from PIL import Image

from cnnkit.inspect.views import capture
from cnnkit.predict import load
from cnnkit.serve.app import create_app
from serve_helpers import REPO, digit_png, png_bytes, trained_run

pytestmark = pytest.mark.slow

HOSTS = {"testserver", "127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def run():
    return trained_run()


@pytest.fixture(scope="module")
def app(run):
    return create_app(run, hostnames=HOSTS)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def digit() -> bytes:
    return digit_png(0)[0]


@pytest.fixture(scope="module")
def held(client, digit) -> dict:
    """The /api/activations answer for test digit 0 (holds its image id)."""
    response = client.post("/api/activations", content=digit)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response, status: int) -> str:
    """The response is `status` with exactly {"error": str}, and leaks no path or traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"] and "/tmp" not in body["error"]
    assert str(REPO) not in body["error"]
    return body["error"]


# ----------------------------------------------------------------------------- documents


def test_model_document_is_the_plan_without_paths(client, run):
    response = client.get("/api/model")
    assert response.status_code == 200
    body = response.json()
    assert body["classes"] == [str(d) for d in range(10)]
    assert body["input_shape"] == [32, 32, 1]
    assert set(body["preprocessing"]) == {"channels", "resize", "mean", "std"}
    layers = body["plan"]["layers"]
    assert [layer["name"] for layer in layers][:3] == ["conv1", "relu1", "pool1"]
    assert layers[0]["params"] == 156 and layers[0]["receptive_field"] == [5, 5]
    assert layers[3]["receptive_field"] == [14, 14] and layers[3]["jump"] == [2, 2]
    assert all(isinstance(value, float) for value in body["metrics"].values())
    text = response.text
    assert str(run) not in text and str(run.parent) not in text and "/tmp/" not in text


def test_healthz_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/app.js">' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for name in ("api.js", "conv.js", "playground.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert_error(client.get("/static/..%2Fapp.py"), 404)
    assert_error(client.get("/static/missing.js"), 404)
    # Swagger UI and ReDoc would load from a CDN: they are off.
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


# ----------------------------------------------------------------------------- prediction


def test_predict_raw_and_multipart_match_the_classifier(client, run, digit):
    raw = client.post("/api/predict?k=3", content=digit, headers={"content-type": "image/png"})
    multipart = client.post("/api/predict?k=3", files={"file": ("seven.png", digit, "image/png")})
    assert raw.status_code == multipart.status_code == 200
    assert raw.json() == multipart.json()
    top = raw.json()["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    # The library's own prediction of the same file, an independent path to the same numbers.
    expected = load(run).predict([Image.open(io.BytesIO(digit))], top_k=3)[0]["top"]
    assert [entry["label"] for entry in top] == [entry["class"] for entry in expected]
    for got, want in zip(top, expected, strict=True):
        assert got["probability"] == pytest.approx(want["prob"], abs=1e-6)
    assert len(client.post("/api/predict?k=1000", content=digit).json()["top"]) == 10


def test_predict_notes_an_image_unlike_the_training_data(client, digit):
    # An MNIST digit, padded from 28x28 to LeNet's 32x32 as its training digits were: no note.
    assert "notes" not in client.post("/api/predict", content=digit).json()
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[..., 1] = 180  # green: colour, and 60x40 where the model takes 32x32
    body = client.post("/api/predict", content=png_bytes(photo)).json()
    assert body["notes"] == [
        "colour, made grey for this 32x32x1 model",
        "resized (letterbox) from 60x40 to 32x32 (width x height)",
    ]
    files = [
        ("files", ("a.png", digit, "image/png")),
        ("files", ("b.png", png_bytes(photo), "image/png")),
    ]
    plain, noted = client.post("/api/predict/batch", files=files).json()["predictions"]
    assert "notes" not in plain and noted["notes"] == body["notes"]


def test_batch_predict_keeps_order(client):
    digits = [digit_png(index)[0] for index in range(3)]
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(digits)]
    response = client.post("/api/predict/batch?k=2", files=files)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    for data, prediction in zip(digits, predictions, strict=True):
        single = client.post("/api/predict?k=2", content=data).json()
        assert [e["index"] for e in single["top"]] == [e["index"] for e in prediction["top"]]
        for a, b in zip(single["top"], prediction["top"], strict=True):
            assert a["probability"] == pytest.approx(
                b["probability"], abs=1e-6
            )  # float32, batch-size dependent
    bad = [*files[:1], ("files", ("x.txt", b"not an image", "text/plain"))]
    assert "file 2" in assert_error(client.post("/api/predict/batch", files=bad), 415)
    assert_error(client.post("/api/predict/batch", content=digits[0]), 422)


# ----------------------------------------------------------------------------- activations


def test_activations_cover_every_layer_as_png_and_array(client, run, digit, held):
    model = load(run).model
    spatial = [layer for layer in model.plan.layers if not layer.flat]
    by_name = {layer["name"]: layer for layer in held["layers"]}
    assert [layer.name for layer in model.plan.layers] == list(by_name)
    assert {"conv1", "pool1", "conv2", "pool2"} <= set(by_name)
    for layer in spatial:
        entry = by_name[layer.name]
        h, w, c = layer.output_shape
        assert entry["shape"] == [h, w, c] and entry["size"] == [h, w] and not entry["downsampled"]
        assert len(entry["channels"]) == c
        tile = Image.open(io.BytesIO(base64.b64decode(entry["channels"][0]["png"])))
        assert tile.size == (w, h)
    assert len(by_name["fc3"]["values"]) == 10
    arrays = client.post("/api/activations?format=array", content=digit).json()
    conv1 = next(layer for layer in arrays["layers"] if layer["name"] == "conv1")
    # The array form is the module's own output, to float32 precision.
    with capture(model, ["conv1"]) as outputs, torch.no_grad():
        model(load(run).preprocess(Image.open(io.BytesIO(digit))))
    for channel in conv1["channels"]:
        values = np.frombuffer(base64.b64decode(channel["data"]), dtype="<f4").reshape(28, 28)
        expected = outputs["conv1"][0, channel["index"]].numpy()
        np.testing.assert_allclose(values, expected, atol=1e-5)
        assert channel["min"] == pytest.approx(float(expected.min()), abs=1e-5)
        assert channel["max"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert arrays["image"] != held["image"]


# ----------------------------------------------------------------------------- conv step


def _reference_output(
    classifier, pixels_png: bytes, layer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of `layer` from forward hooks: the module's real numbers."""
    model = classifier.model
    seen: dict[str, torch.Tensor] = {}
    handle = getattr(model, layer).register_forward_hook(
        lambda _m, args, out: seen.update(input=args[0], output=out)
    )
    try:
        with torch.no_grad():
            model(classifier.preprocess(Image.open(io.BytesIO(pixels_png))))
    finally:
        handle.remove()
    return seen["input"], seen["output"]


@pytest.mark.parametrize(
    ("layer", "channel", "y", "x"),
    [
        ("conv1", 0, 0, 0),
        ("conv1", 5, 27, 27),
        ("conv1", 2, 13, 9),
        ("conv2", 15, 9, 0),
        ("conv2", 3, 4, 5),
    ],
)
def test_conv_step_numbers_are_the_modules(client, run, digit, held, layer, channel, y, x):
    response = client.get(
        "/api/conv-step",
        params={"image": held["image"], "layer": layer, "channel": channel, "y": y, "x": x},
    )
    assert response.status_code == 200, response.text
    step = response.json()
    patch, weights, products = (np.array(step[key]) for key in ("patch", "weights", "products"))
    np.testing.assert_allclose(products, patch * weights, rtol=0, atol=1e-12)
    assert step["sum"] == pytest.approx(products.sum(), abs=1e-9)
    assert abs(step["sum"] + step["bias"] - step["activation"]) < 1e-5
    # Against the module run independently, with torch's own convolution of the same patch.
    classifier = load(run)
    layer_input, output = _reference_output(classifier, digit, layer)
    module = getattr(classifier.model, layer)
    assert step["activation"] == pytest.approx(float(output[0, channel, y, x]), abs=1e-6)
    fh, fw = module.kernel_size
    torch_patch = layer_input[0, :, y : y + fh, x : x + fw]  # valid padding, stride 1 here
    np.testing.assert_allclose(patch, torch_patch.double().numpy(), atol=1e-7)
    np.testing.assert_allclose(weights, module.weight[channel].detach().double().numpy(), atol=0)
    box = step["receptive_field"]
    assert (box["height"], box["width"]) == tuple(
        classifier.model.plan.layer(layer).receptive_field
    )


def test_conv_step_pads_as_the_layer_pads(tmp_path):
    """'same' with stride 2 pads unevenly (TF SAME: the extra zero at bottom/right); corners see it."""
    from cnnkit.network import build
    from cnnkit.runs import make_manifest, save_model

    model = build("13x13x3 > conv 3@3x3 same > relu > conv 4@4x4 s2 same > flatten > fc 3", seed=1)
    with torch.no_grad():  # non-zero biases, so a forgotten bias shows
        for module in (model.conv1, model.conv2):
            module.bias.uniform_(-0.5, 0.5)
    save_model(
        tmp_path,
        model,
        make_manifest(model.spec, ["a", "b", "c"], [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]),
    )
    client = TestClient(create_app(tmp_path, hostnames=HOSTS))
    rgb = np.random.default_rng(0).integers(0, 256, (13, 13, 3), dtype=np.uint8)
    held = client.post("/api/activations", content=png_bytes(rgb)).json()
    assert model.conv2.pad == (1, 2, 1, 2)
    for layer, channel, y, x in [
        ("conv1", 0, 0, 0),
        ("conv1", 2, 12, 12),
        ("conv2", 3, 6, 6),
        ("conv2", 0, 0, 0),
    ]:
        step = client.get(
            "/api/conv-step",
            params={"image": held["image"], "layer": layer, "channel": channel, "y": y, "x": x},
        ).json()
        assert abs(step["result"] - step["activation"]) < 1e-5, (layer, y, x)
        padded = np.array(step["padded"])
        assert padded.any()
        patch = np.array(step["patch"])
        assert np.all(patch[:, padded] == 0)  # padding is zeros, where the mask says
    # Bottom-right of conv2: origin 6*2-1 = 11, window 4 reaches rows 11..14 of a 13-row input.
    corner = client.get(
        "/api/conv-step",
        params={"image": held["image"], "layer": "conv2", "channel": 1, "y": 6, "x": 6},
    ).json()
    assert corner["origin"] == [11, 11]
    assert np.array(corner["padded"]).tolist() == [
        [c >= 2 or r >= 2 for c in range(4)] for r in range(4)
    ]


def test_conv_step_refusals(client, held):
    base = {"image": held["image"], "layer": "conv1", "channel": 0, "y": 0, "x": 0}
    assert "'conv2'" in assert_error(
        client.get("/api/conv-step", params={**base, "layer": "pool1"}), 422
    )
    assert "27" in assert_error(client.get("/api/conv-step", params={**base, "y": 28}), 422)
    conv2 = {**base, "layer": "conv2", "x": 10}  # within the largest conv's range, not conv2's
    assert "0..9" in assert_error(client.get("/api/conv-step", params=conv2), 422)
    assert "0..5" in assert_error(client.get("/api/conv-step", params={**base, "channel": 6}), 422)
    assert "upload" in assert_error(
        client.get("/api/conv-step", params={**base, "image": "nope"}), 404
    )
    assert_error(client.get("/api/conv-step", params={**base, "x": "left"}), 422)
    assert_error(client.get("/api/conv-step", params={"image": held["image"]}), 422)


# ----------------------------------------------------------------------------- Grad-CAM


def test_gradcam_for_a_chosen_class(client, digit, held):
    by_id = client.post(f"/api/gradcam?image={held['image']}&class=3")
    assert by_id.status_code == 200, by_id.text
    cam = by_id.json()
    assert cam["target"] == 3 and cam["label"] == "3" and cam["layer"] == "pool2"
    assert 0 <= cam["probability"] <= 1 and np.array(cam["cam_cells"]).shape == (5, 5)
    for key in ("heatmap_png", "overlay_png", "saliency_png", "input_png"):
        assert Image.open(io.BytesIO(base64.b64decode(cam[key]))).size == (32, 32)
    uploaded = client.post("/api/gradcam", content=digit).json()  # default: the predicted class
    assert uploaded["target"] == uploaded["predicted"] == held["top"][0]["index"]
    assert "0..9" in assert_error(client.post(f"/api/gradcam?image={held['image']}&class=10"), 422)
    assert_error(client.post("/api/gradcam?image=unknown"), 404)


# ----------------------------------------------------------------------------- errors


def test_error_bodies_are_json_without_paths(client, app):
    assert_error(client.get("/nowhere"), 404)
    response = client.put("/api/predict")
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
    assert_error(client.post("/api/predict?k=0", content=b"x"), 422)
    assert_error(client.post("/api/predict", content=b""), 400)
    assert_error(client.post("/api/predict", files={"other": ("a.png", b"x", "image/png")}), 422)
    assert_error(client.post("/api/activations?format=svg", content=b"x"), 422)

    # An unexpected exception becomes a 500 with a generic message; the details stay in the log.
    original = app.state.explorer.activations

    def broken(*_args, **_kwargs):
        raise RuntimeError("/secret/path/model.safetensors exploded")

    app.state.explorer.activations = broken
    try:
        with TestClient(app, raise_server_exceptions=False) as failing:
            message = assert_error(failing.post("/api/activations", content=digit_png(0)[0]), 500)
    finally:
        app.state.explorer.activations = original
    assert "secret" not in message


# ----------------------------------------------------------------------------- OpenAPI


def test_openapi_declares_every_endpoint(client):
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in [
        ("/api/model", "get"),
        ("/api/predict", "post"),
        ("/api/predict/batch", "post"),
        ("/api/activations", "post"),
        ("/api/gradcam", "post"),
        ("/api/conv-step", "get"),
        ("/healthz", "get"),
    ]:
        operation = paths[path][method]
        assert {"200", "403", "413", "422", "500"} <= set(operation["responses"]), path
    assert "multipart/form-data" in paths["/api/predict"]["post"]["requestBody"]["content"]
    assert "/" not in paths and "/static/{name}" not in paths


def test_schemathesis_finds_no_5xx_and_no_schema_violation(app, held):
    """Fuzz every operation from /openapi.json; any 5xx or undeclared response fails.

    Image ids are random, so fuzzed ids would all be 404; every id resolves to the held digit
    here, which sends the fuzzer's layer/channel/y/x past the lookup into the arithmetic.
    """
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    store = app.state.explorer.images
    pixels = store.get(held["image"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[str, set[int]] = {}
    store.get = lambda _key: pixels
    try:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(
                max_examples=20,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def fuzz(case) -> None:
                response = case.call_and_validate(checks=checks)
                name = f"{case.operation.method.upper()} {case.operation.path}"
                seen.setdefault(name, set()).add(response.status_code)

            fuzz()
    finally:
        del store.get  # back to the class's method
    assert len(seen) == 11, seen  # 7 + the 4 of the live view
    assert 200 in seen["GET /api/conv-step"] and 422 in seen["GET /api/conv-step"], seen


# ----------------------------------------------------------------------------- the command


def test_cli_port_zero_prints_the_url_and_stops_on_ctrl_c(run):
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "serve", str(run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:") and int(line.rsplit(":", 1)[1]) > 0, line
        assert httpx.get(f"{line}/healthz", timeout=10).json() == {"status": "ok"}
        model = httpx.get(f"{line}/api/model", timeout=10).json()
        assert json.dumps(model).find(str(run)) == -1
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
