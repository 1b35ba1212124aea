"""Downloads for real, from an HTTP server on 127.0.0.1 serving copies of the real MNIST."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import socket
import threading

import pytest

from cnnkit.data import open_source
from cnnkit.data.download import RemoteFile, download, fetch_missing
from cnnkit.data.registry import REGISTRY
from cnnkit.errors import DataError
from data_helpers import MNIST_FILES, isolated_env, need_mnist  # noqa: F401

LABELS = "t10k-labels-idx1-ubyte"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}  # name.gz -> gzipped content
    corrupt: dict[str, bytes] = {}  # name.gz -> gzipped content with one byte changed

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        kind, _, name = self.path.lstrip("/").partition("/")
        name = name.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None or kind == "missing":
            self.send_error(404, "Not Found")
            return
        if kind == "corrupt":
            body = self.corrupt[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "drop":
            self.wfile.write(
                body[: len(body) // 2]
            )  # then close mid-body, as a failing server does
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server():
    """http://127.0.0.1:PORT/<kind>/<dataset>/<file>.gz: kind is good, corrupt, drop or missing."""
    shared = need_mnist() / "mnist"
    raw = {f"{name}.gz": (shared / name).read_bytes() for name in MNIST_FILES}
    _Handler.files = {name: gzip.compress(data, compresslevel=1) for name, data in raw.items()}
    label = bytearray(raw[f"{LABELS}.gz"])
    label[-1] = (label[-1] + 1) % 10  # a valid gzip of a valid IDX file, with one label changed
    _Handler.corrupt = {f"{LABELS}.gz": gzip.compress(bytes(label))}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _labels_file(url: str) -> RemoteFile:
    return RemoteFile(LABELS, (url,), sha256=REGISTRY["mnist"].files["test-labels"].sha256)


def test_good_download_of_all_of_mnist(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNKIT_MIRROR", f"{server}/good")
    dataset = open_source("mnist", data_dir=tmp_path, progress=True)
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 60000, "test": 10000}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)
    assert all(f["verified"] for f in dataset.files)
    progress = capsys.readouterr().err
    assert re.search(r"train-images-idx3-ubyte\.gz \[#{30}\] (\d+\.\d)/\1 MB\n", progress)
    assert re.search(r"t10k-labels-idx1-ubyte\.gz \[#{30}\] (\d+\.\d)/\1 kB\n", progress)
    # Present now: the second open uses the files with no network at all.
    monkeypatch.setenv("CNNKIT_MIRROR", "http://127.0.0.1:9/nothing")
    assert len(open_source("mnist:test", data_dir=tmp_path, progress=False).splits["test"]) == 10000


def test_corrupted_download_is_deleted(server, tmp_path):
    with pytest.raises(
        DataError,
        match=r"corrupt/mnist/t10k-labels-idx1-ubyte\.gz: checksum mismatch: expected ff7bcfd4.*; deleted the download",
    ):
        download(
            "mnist", _labels_file(f"{server}/corrupt/mnist/{LABELS}.gz"), tmp_path, progress=False
        )
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part is left


def test_dropped_connection_leaves_nothing(server, tmp_path):
    with pytest.raises(
        DataError,
        match=r"the connection dropped after 2,\d{3} of 4,\d{3} bytes; deleted the partial file",
    ):
        download(
            "mnist", _labels_file(f"{server}/drop/mnist/{LABELS}.gz"), tmp_path, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_not_found(server, tmp_path):
    with pytest.raises(
        DataError,
        match=r"could not download t10k-labels-idx1-ubyte: .*missing/mnist/t10k-labels-idx1-ubyte\.gz: HTTP 404 Not Found",
    ):
        download(
            "mnist", _labels_file(f"{server}/missing/mnist/{LABELS}.gz"), tmp_path, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_a_later_url_is_tried_after_a_404(server, tmp_path):
    file = RemoteFile(
        LABELS,
        (f"{server}/missing/x/{LABELS}.gz", f"{server}/good/x/{LABELS}.gz"),
        sha256=REGISTRY["mnist"].files["test-labels"].sha256,
    )
    path = download("mnist", file, tmp_path, progress=False)
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == file.sha256


def test_no_network_names_the_files_and_where(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens here: connection refused, as with no network
    files = [RemoteFile(name, (f"http://127.0.0.1:{port}/{name}.gz",)) for name in MNIST_FILES[2:]]
    with pytest.raises(
        DataError,
        match=r"mnist: not on this machine and no network to download it .*place these files, gzipped or not, in .*: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
    ):
        fetch_missing("mnist", files, tmp_path / "mnist", progress=False)
    assert list((tmp_path / "mnist").iterdir()) == []
