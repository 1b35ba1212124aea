"""Each of serve's safety rules, tested: loopback and token, Host/Origin, size, formats, bombs."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.cli import main
from cnnkit.serve import security
from cnnkit.serve.app import create_app
from cnnkit.serve.security import allowed_hostnames, is_loopback
from serve_helpers import digit_png, live_server, mnist_test, trained_run

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token-for-tests-0123456789"
LIMIT = 200_000  # bytes; small, so the tests need not send 10 MB


@pytest.fixture(scope="module")
def app():
    return create_app(trained_run(), token=TOKEN, max_upload=LIMIT)


@pytest.fixture(scope="module")
def client(app):
    # base_url sets Host: 127.0.0.1, a loopback name the guard allows.
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def assert_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert "Traceback" not in body["error"] and "/tmp" not in body["error"]
    return body["error"]


# ----------------------------------------------------------------------------- binding + token


def test_off_loopback_without_token_refuses_to_start(capsys, tmp_path):
    run = str(trained_run())
    assert main(["serve", run, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--token-file" in err and err.startswith("cnnkit: error:")
    weak = tmp_path / "weak.txt"
    weak.write_text("short\n")
    assert main(["serve", run, "--host", "0.0.0.0", "--token-file", str(weak)]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert main(["serve", run, "--max-upload", "lots"]) == 2
    assert "--max-upload" in capsys.readouterr().err


def test_loopback_rule():
    assert all(is_loopback(host) for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"))
    local = allowed_hostnames("127.0.0.1")
    assert local == {"127.0.0.1", "localhost", "::1"}
    assert "192.168.1.5" in allowed_hostnames("192.168.1.5")
    assert "example.com" in allowed_hostnames("127.0.0.1", ["Example.com"])


def test_token_guards_every_api_route(app, monkeypatch):
    anonymous = TestClient(app, base_url="http://127.0.0.1:8000")
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for method, path in [
        ("GET", "/api/model"),
        ("POST", "/api/predict"),
        ("GET", "/api/conv-step"),
        ("POST", "/api/gradcam"),
        ("GET", "/api/nothing"),
    ]:
        response = anonymous.request(method, path)
        assert "token" in assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.request(method, path, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        assert_error(wrong, 401)
    assert len(calls) == 10  # every check went through the constant-time compare
    good = anonymous.get("/api/model", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    # The page, health and the API description stay open: the page asks for the token itself.
    for path in ("/", "/static/app.js", "/healthz", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path


# ----------------------------------------------------------------------------- Host and Origin


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_foreign_host_or_origin_is_403_on_every_method(client, method):
    for path in ("/", "/healthz", "/api/model", "/api/predict", "/openapi.json"):
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            response = client.request(method, path, headers={"Host": host})
            assert "not allowed" in assert_error(response, 403), (method, path, host)
        for origin in (
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "https://localhost:8000",
        ):
            response = client.request(method, path, headers={"Origin": origin})
            assert "cross-origin" in assert_error(response, 403), (method, path, origin)
    # Same origin (the page's own requests) passes; so does localhost by name.
    ok = client.request(method, "/healthz", headers={"Origin": "http://127.0.0.1:8000"})
    assert ok.status_code == (200 if method == "GET" else 405)
    assert client.request("GET", "/healthz", headers={"Host": "localhost:8000"}).status_code == 200


# ----------------------------------------------------------------------------- upload size


def _asgi_call(app, headers: list[tuple[bytes, bytes]], chunks, chunk_size: int = 65536):
    """Drive the ASGI app directly; returns (status, body, bytes the app pulled)."""
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        if chunks is None:
            raise AssertionError("the body was read although Content-Length already refused it")
        pulled += chunk_size
        return {
            "type": "http.request",
            "body": b"\0" * chunk_size,
            "more_body": pulled < chunks * chunk_size,
        }

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


def test_content_length_over_the_limit_is_refused_before_reading(app):
    status, body, pulled = _asgi_call(app, [(b"content-length", str(LIMIT + 1).encode())], None)
    assert status == 413 and b"limit" in body and pulled == 0


def test_streamed_body_is_counted_and_cut_off(app):
    # Chunked: no Content-Length. 10 MB offered; the app stops pulling right after the limit.
    status, body, pulled = _asgi_call(app, [(b"transfer-encoding", b"chunked")], chunks=160)
    assert status == 413 and b"limit" in body
    assert pulled <= LIMIT + 65536


def test_upload_limit_over_a_real_socket(app):
    with live_server(app) as url:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        big = httpx.post(
            f"{url}/api/predict", content=b"\0" * (LIMIT + 1), headers=headers, timeout=20
        )
        assert_error(big, 413)

        def chunks():
            for _ in range(40):  # 2.6 MB in 64 KB chunks, no Content-Length
                yield b"\0" * 65536

        try:
            streamed = httpx.post(
                f"{url}/api/predict", content=chunks(), headers=headers, timeout=20
            )
            assert_error(streamed, 413)
        except httpx.WriteError:
            pass  # the server answered and closed while the client was still sending: also refused
        small = httpx.post(
            f"{url}/api/predict", content=digit_png(0)[0], headers=headers, timeout=20
        )
        assert small.status_code == 200


# ----------------------------------------------------------------------------- formats and bombs


def _encode(fmt: str, **options) -> bytes:
    images, _ = mnist_test()
    buffer = io.BytesIO()
    Image.fromarray(images[0]).convert("RGB" if fmt == "JPEG" else "L").save(
        buffer, format=fmt, **options
    )
    return buffer.getvalue()


def test_only_allowed_formats_are_decoded(client):
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "WEBP"):
        response = client.post("/api/predict", content=_encode(fmt))
        assert response.status_code == 200, (fmt, response.text)
    for data in (
        _encode("TIFF"),
        _encode("PPM"),
        b"%PDF-1.4\n...",
        b"%!PS-Adobe-3.0 EPSF-3.0\n",
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b"http://example.com/seven.png",
        b"/etc/passwd",
    ):
        assert "PNG, JPEG" in assert_error(client.post("/api/predict", content=data), 415)
    truncated = _encode("PNG")[:60]
    assert "truncated" in assert_error(client.post("/api/predict", content=truncated), 422)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int) -> bytes:
    """A real side x side grayscale PNG of zeros: side^2 bytes decoded, ~side^2/1000 stored."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    parts = [compressor.compress(row * 100) for _ in range(side // 100)]
    data = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@pytest.fixture(scope="module")
def roomy_client():
    """The default 10 MB upload limit: the 20,000-px bomb is 400 KB compressed."""
    with TestClient(create_app(trained_run()), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_decompression_bomb_is_refused_fast_and_small(roomy_client, side):
    # 10,000^2 is just over Pillow's limit, 20,000^2 over twice it; both are over the server's
    # 40 MP budget, refused from the header (413). Decoded, they would take 100 and 400 MB.
    bomb = bomb_png(side)
    assert len(bomb) < 1_000_000 and struct.unpack(">II", bomb[16:24]) == (side, side)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak-RSS mark, so the check below sees only this request
    before = _peak_rss_mb()
    start = time.perf_counter()
    message = assert_error(roomy_client.post("/api/predict", content=bomb), 413)
    elapsed = time.perf_counter() - start
    if side * side < 2 * Image.MAX_IMAGE_PIXELS:  # past twice, Pillow refuses in Image.open
        assert f"{side * side:,} pixels is over the budget of 40,000,000" in message
        assert "--max-pixels" in message
    else:
        assert "decompression bomb" in message
    assert elapsed < 2.0
    assert _peak_rss_mb() - before < 100


# ----------------------------------------------------------------------------- fixed model


def test_no_endpoint_takes_a_path_or_a_url(client):
    document = client.get("/openapi.json").json()
    names = {
        parameter["name"]
        for path in document["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", [])
    }
    assert names == {"k", "format", "class", "image", "layer", "channel", "y", "x", "step", "since"}
    routes = {
        (route.path, tuple(sorted(route.methods)))
        for route in client.app.routes
        if hasattr(route, "methods")
    }
    assert {path for path, _ in routes} == {
        "/api/model",
        "/api/predict",
        "/api/predict/batch",
        "/api/activations",
        "/api/gradcam",
        "/api/conv-step",
        "/api/live",
        "/api/live/snapshot",
        "/api/live/metrics",
        "/api/live/stream",
        "/healthz",
        "/openapi.json",
        "/",
        "/static/{name}",
    }
