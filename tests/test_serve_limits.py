"""What a stranger can send is bounded: pixels, header bytes and time, connections, log lines,
special files behind image names, and malformed Host/Origin headers."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.cli import main
from cnnkit.data.folder import load_folder
from cnnkit.data.images import open_image, preprocess_image
from cnnkit.errors import ImageError, ImageTooLarge
from cnnkit.serve import limits
from cnnkit.serve.app import create_app
from cnnkit.serve.limits import LimitedHttpTools, RateLimit
from cnnkit.serve.security import HostOriginGuard
from cnnkit.serve.server import listen, server_config
from test_predict import save_run


def png_of_zeros(width: int, height: int, channels: int = 3, rows: int | None = None) -> bytes:
    """A width x height PNG (RGB or RGBA) of zeros; with `rows`, only that many rows are stored,
    which is enough for a header check and cheap to make."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
    compressor = zlib.compressobj(6)
    row = b"\0" * (channels * width + 1)
    count = height if rows is None else rows
    parts = [compressor.compress(row * 100) for _ in range(count // 100)]
    parts.append(compressor.compress(row * (count % 100)))
    pixels = b"".join(parts) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    return png_of_zeros(width, height, rows=1)


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


# ----------------------------------------------------------------------------- pixel budget


def test_the_pixel_budget_is_decided_from_the_header():
    data = png_header_only(9400, 9500)  # the image: 89 MP, 267 MB decoded
    start = time.perf_counter()
    with pytest.raises(
        ImageTooLarge,
        match=r"9400x9500 = 89,300,000 pixels is over the budget of 40,000,000; shrink the image, or raise --max-pixels",
    ):  # noqa: E501
        open_image(io.BytesIO(data))
    assert time.perf_counter() - start < 0.1
    with pytest.raises(ImageTooLarge, match="over the budget of 1,000"):
        open_image(io.BytesIO(png_header_only(40, 40)), max_pixels=1000)
    assert open_image(io.BytesIO(png_header_only(40, 40)), max_pixels=1600).size == (40, 40)


def test_a_jpeg_is_decoded_near_the_models_size_in_draft_mode():
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 10, 10)).save(buffer, format="JPEG")
    image = open_image(io.BytesIO(buffer.getvalue()), draft=(28, 28))
    assert image.size == (200, 150)  # 1/8 scale: the smallest still at least 28x28


def test_a_large_image_is_reduced_before_fitting_as_a_full_decode_would_be():
    # Alpha on white, then a box reduce: within 1 level of converting the whole image first.
    import numpy as np

    from cnnkit.data.images import fit_array, to_array

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (2400, 2000, 4), dtype=np.uint8), "RGBA")
    fast = preprocess_image(image, (32, 32, 3))
    slow = fit_array(to_array(image, 3), (32, 32))
    assert fast.shape == (32, 32, 3)
    assert np.abs(fast.astype(int) - slow).max() <= 1


def test_the_server_answers_413_with_json_before_decoding(tmp_path: Path):
    app = create_app(save_run(tmp_path / "run"), max_pixels=1_000_000)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        for path in ("/api/predict", "/api/activations", "/api/gradcam"):
            response = client.post(path, content=png_header_only(9400, 9500))
            assert response.status_code == 413, response.text
            assert response.json() == {
                "error": "the upload: 9400x9500 = 89,300,000 pixels is over the budget of "
                "1,000,000; shrink the image, or raise the server's --max-pixels"
            }
        small = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(small, format="PNG")
        assert client.post("/api/predict", content=small.getvalue()).status_code == 200


@pytest.mark.slow
def test_the_largest_accepted_image_costs_under_300_mb(tmp_path: Path):
    from cnnkit.predict import load
    from cnnkit.serve.service import Decoder

    decoder = Decoder(load(save_run(tmp_path / "run")))
    data = png_of_zeros(6300, 6300, channels=4)  # 39.7 MP RGBA, 159 MB decoded; 160 KB stored
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak-RSS mark
    before = _peak_rss_mb()
    pixels, _notes = decoder.fit_now("the upload", data)
    assert pixels.shape == (8, 8, 3)
    assert _peak_rss_mb() - before < 300  # measured: +170 MB (decode; strips of ~8 MB after)
    decoder.close()


# ----------------------------------------------------------------------------- special files


@pytest.fixture
def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    return {"fifo": fifo, "zero": zero}


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_fifo_or_device_named_png_is_refused_without_reading(special_files, kind):
    with pytest.raises(ImageError, match=r"not a regular file \(a FIFO, device or socket\)"):
        open_image(special_files[kind])


def test_a_data_folder_skips_a_fifo_and_a_link_to_dev_zero(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("L", (8, 8), 7).save(tmp_path / "data" / name / "ok.png")
    os.mkfifo(tmp_path / "data" / "a" / "fifo.png")
    (tmp_path / "data" / "b" / "zero.png").symlink_to("/dev/zero")
    dataset = load_folder(tmp_path / "data", "folder", progress=False)
    assert len(dataset.splits["train"].images) == 2
    reasons = {Path(s["path"]).name: s["reason"] for s in dataset.skipped}
    assert reasons == {
        "fifo.png": "not a regular file (FIFO, device or broken link)",
        "zero.png": "not a regular file (FIFO, device or broken link)",
    }


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_predict_refuses_a_special_file_in_one_line(special_files, tmp_path, capsys, kind):
    run = save_run(tmp_path / "run")
    assert main(["predict", str(run), str(special_files[kind])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file (a FIFO or device)" in err


def test_predict_refuses_an_image_over_max_pixels_in_one_line(tmp_path, capsys):
    run = save_run(tmp_path / "run")
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    assert main(["predict", str(run), str(tmp_path / "big.png"), "--max-pixels", "50000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "300x200 = 60,000 pixels is over the budget of 50,000" in err
    assert main(["predict", str(run), str(tmp_path / "big.png"), "--max-pixels", "60000"]) == 0


# ----------------------------------------------------------------------------- Host and Origin


async def _ok(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_malformed_origin_is_403_not_500():
    with TestClient(HostOriginGuard(_ok, {"127.0.0.1"}), base_url="http://127.0.0.1") as client:
        for origin in ("http://[", "http://[::1", "http://a]b["):
            response = client.get("/", headers={"Origin": origin})
            assert response.status_code == 403, origin
            assert "cross-origin request from" in response.json()["error"]


def _guard_status(host: str, connected_to: str) -> tuple[int, bytes]:
    import asyncio

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "headers": [(b"host", host.encode())],
        "server": (connected_to, 8000),
    }
    asyncio.run(HostOriginGuard(_ok, {"localhost", "127.0.0.1", "::1"})(scope, receive, send))
    return sent[0]["status"], sent[-1]["body"]


def test_the_address_a_client_connected_to_is_an_allowed_host():
    assert _guard_status("10.1.2.3:8000", "10.1.2.3")[0] == 200
    assert _guard_status("[fe80::1]:8000", "fe80::1")[0] == 200
    assert _guard_status("10.1.2.3:8000", "::ffff:10.1.2.3")[0] == 200
    status, body = _guard_status("10.9.9.9:8000", "10.1.2.3")
    assert status == 403 and b"--allow-host 10.9.9.9" in body
    status, body = _guard_status("myname.local:8000", "10.1.2.3")
    assert status == 403 and b"start the server with --allow-host myname.local" in body


# ----------------------------------------------------------------------------- real sockets


@contextlib.contextmanager
def limited_server(max_connections: int = 1000) -> Iterator[int]:
    """`_ok` on uvicorn with serve's own config, in a thread; yields the port."""
    import uvicorn

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(server_config(_ok, max_connections=max_connections))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def _read_status(conn: socket.socket) -> int:
    conn.settimeout(5)
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_headers_over_16_kib_get_431_without_reading_the_rest():
    with limited_server() as port:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            pad = b"X-Pad: " + b"a" * 1000 + b"\r\n"
            with contextlib.suppress(OSError):  # the server may close before we stop
                for _ in range(20):  # 20 KB: past the limit
                    conn.sendall(pad)
            assert _read_status(conn) == 431
        with socket.create_connection(("127.0.0.1", port)) as conn:  # 15 KB is fine
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad * 15 + b"\r\n")
            assert _read_status(conn) == 200


def test_past_the_connection_cap_a_new_connection_gets_503_at_once():
    with limited_server(max_connections=3) as port:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.2)  # let the server accept them
        try:
            with socket.create_connection(("127.0.0.1", port)) as extra:
                start = time.perf_counter()
                assert _read_status(extra) == 503
                assert time.perf_counter() - start < 1.0
        finally:
            for conn in held:
                conn.close()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _read_status(conn) == 200


def test_a_half_open_connection_gets_408_after_the_header_timeout(monkeypatch):
    monkeypatch.setattr(LimitedHttpTools, "header_timeout", 0.3)
    with limited_server() as port, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: 127")  # and nothing more
        start = time.perf_counter()
        assert _read_status(conn) == 408
        assert 0.2 < time.perf_counter() - start < 2.0


# ----------------------------------------------------------------------------- log flood


def test_a_repeated_log_line_passes_once_a_second_and_counts_the_rest():
    now = [100.0]
    limiter = RateLimit(interval=1.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    accept = "socket.accept() out of system resource\nsocket: <socket fd=%d>"
    assert limiter.filter(record(accept % 7))
    assert not any(limiter.filter(record(accept % fd)) for fd in range(1000))
    assert limiter.filter(record("another message"))  # other messages pass
    now[0] += 1.0
    passed = record(accept % 8)
    assert limiter.filter(passed)
    assert passed.getMessage().endswith("(1000 more like this in the last 1 s)")


def test_serve_installs_the_limit_on_asyncio_and_uvicorn_loggers():
    limiter = limits.limit_logs()
    try:
        assert limiter in logging.getLogger("asyncio").filters
        assert limiter in logging.getLogger("uvicorn.error").filters
    finally:
        for name in ("asyncio", "uvicorn.error"):
            logging.getLogger(name).removeFilter(limiter)
