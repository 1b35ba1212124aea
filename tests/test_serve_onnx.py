"""`cnnkit serve model.onnx`: the prediction API through ONNX Runtime, and nothing of torch.

The reference is the run's own PyTorch Classifier: the served .onnx model must rank and score an
upload as it does. Without torch (made unimportable in a subprocess, as `cnnkit[runtime]`
installs it), the server starts, predicts, and the views that need the network's layers answer
501 with what to install; every command that needs torch says so in one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.cli import main
from cnnkit.export import export_onnx
from cnnkit.onnx_runtime import load_onnx
from cnnkit.predict import load
from cnnkit.serve.app import create_app
from conftest import REPO
from serve_helpers import png_bytes
from test_export import CLASSES, pixels, save_run

HOSTS = {"testserver", "127.0.0.1", "localhost"}
VIEWS_MESSAGE = (
    r"needs the network's layers, which an .onnx model does not give: install the full cnnkit "
    r"\(pip install 'cnnkit\[full\]'\) and serve the run directory \(cnnkit serve RUN\)"
)
# torch and what only the `full` extra brings: unimportable, as in a `cnnkit[runtime]` install.
BLOCK_FULL = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "safetensors", "matplotlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(run, its model.onnx), exported once for the module."""
    run = save_run(tmp_path_factory.mktemp("serve-onnx") / "run")
    return run, export_onnx(run, images=pixels((40, 12, 12, 3))).path


@pytest.fixture(scope="module")
def client(exported):
    return TestClient(create_app(exported[1], hostnames=HOSTS))


def expected_top(run: Path, image: np.ndarray) -> list[tuple[str, float]]:
    """The PyTorch Classifier's ranking of `image`: the reference for the served .onnx."""
    return [(t["class"], t["prob"]) for t in load(run).predict(image, top_k=3)[0]["top"]]


def served_top(body: dict) -> list[tuple[str, float]]:
    return [(t["label"], t["probability"]) for t in body["top"]]


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [label for label, _ in got] == [label for label, _ in want]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in want], atol=1e-5)


@pytest.mark.slow
def test_predict_ranks_an_upload_as_pytorch_does(exported, client):
    image = pixels((20, 30, 3), seed=3)
    response = client.post("/api/predict?k=3", content=png_bytes(image))
    assert response.status_code == 200, response.text
    assert_same_ranking(served_top(response.json()), expected_top(exported[0], image))
    batch = client.post(
        "/api/predict/batch?k=3",
        files=[("files", ("a.png", png_bytes(image))), ("files", ("b.png", png_bytes(image)))],
    )
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2


def test_model_document_holds_the_exported_plan(exported, client):
    model = client.get("/api/model").json()
    assert model["classes"] == CLASSES and model["input_shape"] == [12, 12, 3]
    assert model["plan"]["layers"][0]["name"] == "conv1"
    assert model["notation"].startswith("12x12x3 > conv 4@3x3")
    assert model["preprocessing"]["mean"] == [0.5, 0.4, 0.3]
    assert str(exported[1]) not in json.dumps(model)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/activations"),
        ("post", "/api/gradcam?class=1"),
        ("get", "/api/conv-step?image=abc&layer=conv1&channel=0&y=30&x=0"),
    ],
)
def test_views_that_need_layers_say_what_to_install(client, method, path):
    response = getattr(client, method)(path, **({"content": b"x"} if method == "post" else {}))
    assert response.status_code == 501
    assert re.search(path.split("?")[0] + " " + VIEWS_MESSAGE, response.json()["error"])


def test_openapi_documents_the_501(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "501" in paths["/api/activations"]["post"]["responses"]
    assert "/api/predict" in paths


def test_a_foreign_model_is_served_with_input_and_classes(exported, tmp_path):
    model = onnx.load(exported[1])
    del model.metadata_props[:]
    foreign = tmp_path / "other.onnx"
    onnx.save(model, foreign)
    client = TestClient(create_app(load_onnx(foreign, "12x12x3", "a,b,c"), hostnames=HOSTS))
    document = client.get("/api/model").json()
    assert document["plan"] is None and document["classes"] == ["a", "b", "c"]
    assert document["notation"] == "other.onnx"
    response = client.post("/api/predict?k=2", content=png_bytes(pixels((12, 12, 3))))
    assert response.status_code == 200 and len(response.json()["top"]) == 2


# ----------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{onnx}", "--device", "cuda"],
            r"--device cuda: an .onnx model is served by ONNX Runtime",
        ),
        (
            ["{run}", "--input", "12x12x3"],
            r"--input and --classes are for an .onnx model; .* a run",
        ),
        (["{foreign}"], r"has no cnnkit metadata .* --input 28x28x1 --classes"),
        (["{foreign}", "--input", "12x12x3", "--classes", "a,b"], r"--classes gives 2 names"),
    ],
)
def test_serve_refuses_bad_model_options_in_one_line(exported, tmp_path, capsys, args, message):
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(exported[1])
    del model.metadata_props[:]
    onnx.save(model, foreign)
    names = {"onnx": exported[1], "run": exported[0], "foreign": foreign}
    code = main(["serve", *(arg.format(**names) for arg in args), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err


def run_blocked(script: str, timeout: float = 120) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", BLOCK_FULL + textwrap.dedent(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
def test_cli_serves_an_onnx_model_with_torch_unimportable(exported, tmp_path):
    import httpx

    run, path = exported
    image = pixels((20, 30, 3), seed=5)
    process = run_blocked(
        f"""
        from cnnkit.cli import main
        code = main(["serve", {str(path)!r}, "--port", "0"])
        print("exit", code, "torch" in sys.modules, flush=True)
        """
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url + process.stderr.read()
        response = httpx.post(f"{url}/api/predict?k=3", content=png_bytes(image), timeout=30)
        assert response.status_code == 200, response.text
        assert_same_ranking(served_top(response.json()), expected_top(run, image))
        views = httpx.post(f"{url}/api/activations", content=png_bytes(image), timeout=30)
        assert views.status_code == 501 and re.search(VIEWS_MESSAGE, views.json()["error"])
        assert httpx.get(f"{url}/", timeout=30).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert stdout.strip().splitlines()[-1] == "exit 0 False", stdout + stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_commands_that_need_torch_name_the_full_extra_in_one_line(exported, tmp_path):
    run, _ = exported
    Image.fromarray(pixels((12, 12, 3))).save(tmp_path / "a.png")
    commands = [
        ["train", "--model", "lenet5", "--data", "mnist-mini", "--out", str(tmp_path / "r")],
        ["serve", str(run), "--port", "0"],
        ["predict", str(run), str(tmp_path / "a.png")],
        ["evaluate", str(run), "--data", "mnist-mini"],
        ["export", str(run), "--out", str(tmp_path / "m.onnx")],
    ]
    process = run_blocked(
        f"""
        import contextlib, io, json
        from cnnkit.cli import main
        for argv in {commands!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            print(json.dumps([argv[0], code, err.getvalue()]), flush=True)
        """
    )
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert [line[0] for line in lines] == [argv[0] for argv in commands]
    for command, code, err in lines:
        assert code == 2 and err.count("\n") == 1, (command, err)
        assert re.fullmatch(
            rf"cnnkit: error: 'cnnkit {command}' needs torch, which is not installed \(without "
            r"the full extra, only .onnx models predict and serve\); run pip install "
            r"'cnnkit\[full\]'\n",
            err,
        ), err


def test_a_missing_module_of_another_package_is_not_turned_into_the_extra(monkeypatch):
    def handler(_args):
        raise ModuleNotFoundError("No module named 'nothing_here'", name="nothing_here")

    monkeypatch.setattr("cnnkit.cli.plan_cmds.run_plan", handler)
    with pytest.raises(ModuleNotFoundError, match="nothing_here"):
        main(["plan", "lenet5"])


# ----------------------------------------------------------------------------- the page


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_shows_the_prediction_and_what_the_views_need(exported, browser, tmp_path):
    """Last in the module: the browser fixture holds an event loop until the module ends."""
    from serve_helpers import live_server
    from test_serve_browser import PageWatch

    run, path = exported
    image = pixels((12, 12, 3), seed=7)
    upload = tmp_path / "image.png"
    upload.write_bytes(png_bytes(image))
    best = expected_top(run, image)[0][0]
    with live_server(create_app(path)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        watch = PageWatch(page)
        page.goto(url)
        page.wait_for_selector("#status:has-text('Give the model')")
        assert "3 classes" in page.locator("#model-totals").inner_text()
        page.set_input_files("#file", str(upload))
        page.wait_for_selector(f"#bars li.best[data-label='{best}']")
        assert "pip install 'cnnkit[full]'" in page.locator("#overview").inner_text()
        assert page.locator("#status").inner_text().startswith(f"Predicted {best} ")
        page.close()
    # The one 501 is the page asking for the maps (Chromium logs it too); nothing else failed.
    assert watch.problems == [
        f"501: {url}/api/activations?format=array&k=5",
        "console: Failed to load resource: the server responded with a status of 501 "
        "(Not Implemented)",
    ], watch.problems
