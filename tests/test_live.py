"""Live training: the snapshot writer (atomic, index grows, probe fixed, training unchanged) and
the /api/live endpoints (index, snapshot, metrics, stream) under serve's security rules."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit import runs
from cnnkit.inspect import colours, snapshots
from cnnkit.serve import live as live_module
from cnnkit.serve.app import create_app
from cnnkit.train import Hooks, TrainConfig, fit

TOKEN = "live-token-for-the-tests-0123456789"


def train(out, hooks: Hooks | None = None, **options):
    config = TrainConfig(data="mnist-mini", out=str(out), eval_every=0.5, quiet=True, **options)
    return fit(config, hooks)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The default digits network, one epoch of mnist-mini, a snapshot at each of 2 evaluations."""
    hook = snapshots.snapshot_hook(max_fraction=1.0)
    result = train(tmp_path_factory.mktemp("live") / "run", Hooks(on_snapshot=hook))
    return result, hook


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


# ----------------------------------------------------------------------------- the writer


@pytest.mark.slow
def test_a_snapshot_per_evaluation_and_the_index_lists_them(run):
    result, hook = run
    index = snapshots.read_index(result.run)
    steps = [record["step"] for record in result.metrics]
    assert [entry["step"] for entry in index["snapshots"]] == steps == [70, 140]
    assert [entry["val_acc"] for entry in index["snapshots"]] == [
        record["val_acc"] for record in result.metrics
    ]
    assert hook.skipped == 0 and len(hook.written) == 2
    folder = snapshots.live_dir(result.run)
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in folder.iterdir()) == [
        "index.json",
        "probe.png",
        "step-00000070.json",
        "step-00000140.json",
    ]


def test_snapshot_holds_the_first_conv_filters_maps_and_gradcam(run):
    result, _ = run
    document = json.loads((snapshots.live_dir(result.run) / "step-00000140.json").read_text())
    model = result.model
    weights = model.conv1.weight.detach().float().numpy()  # (8, 1, 3, 3)
    assert document["filters"]["layer"] == "conv1"
    assert document["filters"]["shape"] == [8, 1, 3, 3]
    assert document["filters"]["limit"] == pytest.approx(float(np.abs(weights).max()), rel=1e-6)
    grid = decode_png(document["filters"]["png"])
    assert grid.shape == (3, 8 * 4 - 1, 3)  # 8 filters of 3x3 in a row, 1 px apart
    # The largest positive weight's pixel is coloured as the one signed map colours it.
    k, _, row, col = np.unravel_index(np.argmax(weights), weights.shape)
    limit = float(np.abs(weights).max())
    expected = colours.signed(np.array([weights[k, 0, row, col]]), limit)[0]
    assert tuple(grid[row, k * 4 + col]) == tuple(expected)
    names = [layer["name"] for layer in document["maps"]]
    assert names[0] == "conv1" and len(names) == 6  # (conv, pool) x3
    assert decode_png(document["maps"][0]["png"]).shape == (28, 8 * 29 - 1, 3)
    assert document["gradcam"]["layer"] and 0 <= document["gradcam"]["predicted"] < 10
    assert decode_png(document["gradcam"]["overlay_png"]).shape == (28, 28, 3)


def test_probe_is_the_first_validation_image_stored_once(run, tmp_path):
    result, _ = run
    probe = decode_png(
        base64.b64encode((snapshots.live_dir(result.run) / "probe.png").read_bytes())
    )
    from cnnkit.data import open_source, split_validation

    dataset = open_source("mnist-mini", progress=False)
    _, val = split_validation(dataset, 0.1, 0)
    assert np.array_equal(probe[..., 0], val.images[0][..., 0])
    # A later snapshot with another image leaves the stored probe as it was.
    before = (snapshots.live_dir(result.run) / "probe.png").read_bytes()
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(result.run, copy)
    snapshots.write_snapshot(copy, result.model, 999, np.zeros((28, 28, 1), np.uint8))
    assert (snapshots.live_dir(copy) / "probe.png").read_bytes() == before
    assert [e["step"] for e in snapshots.read_index(copy)["snapshots"]] == [70, 140, 999]


@pytest.mark.slow
def test_snapshots_change_nothing_in_training(run, tmp_path):
    """The same seed with and without snapshots gives bitwise the same weights and metrics."""
    result, _ = run
    plain = train(tmp_path / "plain")
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, result.model.state_dict()[name]), name
    strip = ("elapsed_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in plain.metrics] == [
        {k: v for k, v in r.items() if k not in strip} for r in result.metrics
    ]
    assert not snapshots.live_dir(plain.run).exists()


def test_hook_skips_a_snapshot_over_its_time_budget(run, tmp_path, monkeypatch):
    result, _ = run
    hook = snapshots.snapshot_hook(max_fraction=0.05)
    clock = iter([0.0, 1.0, 1.5, 2.0, 100.0, 101.0])  # the first costs 1 s, then 0.5 s later...
    monkeypatch.setattr(snapshots.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(snapshots, "write_snapshot", lambda *a: {"step": a[2]})
    monkeypatch.setattr(snapshots, "forget_other_runs", lambda run: None)

    def evaluation(step):
        return type(
            "E", (), {"run": tmp_path, "model": None, "probe": None, "record": {"step": step}}
        )

    hook(evaluation(1))  # perf_counter: 0.0 start, 1.0 end -> cost 1 s
    hook(evaluation(2))  # 1.5: 1 s > 5% of 0.5 s -> skipped
    hook(evaluation(3))  # 2.0: still over budget (1 s > 5% of 1 s)
    hook(evaluation(4))  # 100.0: 1 s < 5% of 99 s -> written
    assert [entry["step"] for entry in hook.written] == [1, 4] and hook.skipped == 2


def test_a_replaced_run_forgets_the_old_snapshots(run, tmp_path):
    result, _ = run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(result.run, copy)
    runs.truncate_metrics(copy, 70)  # as a resume from step 70 does
    snapshots.forget_other_runs(copy)
    assert [e["step"] for e in snapshots.read_index(copy)["snapshots"]] == [70]
    assert not (snapshots.live_dir(copy) / "step-00000140.json").exists()


# ----------------------------------------------------------------------------- the endpoints


@pytest.fixture(scope="module")
def client(run):
    app = create_app(run[0].run, token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def assert_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "/tmp" not in body["error"] and "pytest" not in body["error"]
    return body["error"]


def test_index_snapshot_and_metrics(client, run):
    result, _ = run
    index = client.get("/api/live").json()
    assert index["finished"] is True
    assert [entry["step"] for entry in index["snapshots"]] == [70, 140]
    assert all("file" not in entry for entry in index["snapshots"])  # no names of files
    assert decode_png(index["probe_png"]).shape[:2] == (28, 28)
    snapshot = client.get("/api/live/snapshot", params={"step": 140}).json()
    on_disk = json.loads((snapshots.live_dir(result.run) / "step-00000140.json").read_text())
    assert snapshot == on_disk
    records = client.get("/api/live/metrics").json()["records"]
    assert records == runs.read_metrics(result.run)
    assert client.get("/api/live/metrics", params={"since": 70}).json()["records"] == records[1:]


def test_errors_name_no_paths(client):
    assert "no snapshot at step 36" in assert_error(
        client.get("/api/live/snapshot", params={"step": 36}), 404
    )
    assert_error(client.get("/api/live/snapshot", params={"step": -1}), 422)
    assert_error(client.get("/api/live/snapshot", params={"step": "../../etc"}), 422)
    assert_error(client.get("/api/live/metrics", params={"since": "x"}), 422)


def test_damaged_metrics_log_is_503_without_its_path(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run[0].run, copy)
    with open(copy / runs.METRICS, "a") as file:
        file.write("not json\n{}\n")
    with TestClient(create_app(copy), base_url="http://127.0.0.1:8000") as local:
        message = assert_error(local.get("/api/live/metrics"), 503)
    assert str(tmp_path) not in message and "damaged" in message


@pytest.mark.parametrize(
    "path", ["/api/live", "/api/live/snapshot?step=70", "/api/live/metrics", "/api/live/stream"]
)
def test_live_routes_keep_the_security_rules(client, path):
    assert_error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.get(path, headers={"Host": "evil.example"}), 403)
    assert_error(client.get(path, headers={"Origin": "http://evil.example"}), 403)
    assert_error(client.get(path, headers={"Content-Length": str(11 << 20)}), 413)


def test_stream_sends_a_change_and_ends_when_training_has(client):
    with client.stream("GET", "/api/live/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert text.startswith("retry: 1000")
    event = [line for line in text.splitlines() if line.startswith("data: {")][0]
    assert json.loads(event[6:])["finished"] is True


def test_stream_lifetime_and_cap(run, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run[0].run, copy)
    state = copy / runs.STATE_DIR / runs.STATE_JSON
    state.write_text(state.read_text().replace('"finished": true', '"finished": false'))
    monkeypatch.setattr(live_module, "STREAM_SECONDS", 0.3)
    monkeypatch.setattr(live_module, "POLL_SECONDS", 0.05)
    with TestClient(create_app(copy), base_url="http://127.0.0.1:8000") as local:
        index = local.get("/api/live").json()
        assert index["finished"] is False
        with local.stream("GET", "/api/live/stream") as response:
            text = "".join(response.iter_text())
        assert "event: change" in text and text.endswith("event: timeout\ndata: {}\n\n")
        monkeypatch.setattr(live_module, "MAX_STREAMS", 0)
        assert "live streams are open" in assert_error(local.get("/api/live/stream"), 503)


def test_finished_run_is_reloaded_from_its_final_weights(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run[0].run, copy)
    app = create_app(copy)
    service = app.state.explorer
    before = service.explorer
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        local.get("/api/live")
        assert service.explorer is before  # the same weights: nothing to reload
        # The trainer replaces the weights (same bytes here; a new mtime is what is watched).
        weights = copy / runs.WEIGHTS
        weights.write_bytes(weights.read_bytes())
        import os

        os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
        assert local.get("/api/live").json()["finished"] is True
        assert service.explorer is not before
        assert local.post("/api/predict", content=b"x").status_code == 415  # still serving


def test_a_served_classifier_has_no_live_view(run):
    from cnnkit.predict import load

    with TestClient(create_app(load(run[0].run)), base_url="http://127.0.0.1:8000") as local:
        assert "not a run folder" in assert_error(local.get("/api/live"), 404)


def test_a_network_without_conv_gets_maps_only(tmp_path):
    from cnnkit.network import build
    from cnnkit.spec import parse

    spec = parse("28x28x1 > flatten > fc 10")
    model = build(spec, seed=0)
    runs.save_model(tmp_path, model, runs.make_manifest(spec, list("0123456789"), [0.1], [0.3]))
    entry = snapshots.write_snapshot(tmp_path, model, 5, np.zeros((28, 28, 1), np.uint8))
    document = json.loads((snapshots.live_dir(tmp_path) / entry["file"]).read_text())
    assert document["filters"] is None and document["gradcam"] is None and document["maps"] == []
