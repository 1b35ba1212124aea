"""Shared by the serve tests: one trained run per session, real MNIST digits, a live server.

Imported by test_serve_api/security/browser (pytest puts tests/ on sys.path); it holds no
tests itself. The run is trained once per process, whichever test module asks first.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import REPO, need_mnist  # noqa: F401 - REPO is re-exported to the serve tests


@functools.cache
def trained_run() -> Path:
    """A LeNet-5 run trained for one epoch on mnist-mini, the model every serve test serves."""
    from cnnkit.train import TrainConfig, fit

    folder = Path(tempfile.mkdtemp(prefix="cnnkit-serve-test-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    run = folder / "lenet"
    # batch 128 at lr 0.05: 91% validation accuracy after the one epoch (measured); the
    # default lr 0.2 leaves this ReLU LeNet at chance (10%) after its 70 steps.
    config = TrainConfig.for_model(
        "lenet5", data="mnist-mini", epochs=1, batch_size=128, lr=0.05, out=str(run), quiet=True
    )
    fit(config)
    return run


@functools.cache
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test split (see conftest.need_mnist): uint8 (10000, 28, 28) and labels."""
    from cnnkit.data.idx import parse_idx

    mnist = need_mnist() / "mnist"
    images = parse_idx((mnist / "t10k-images-idx3-ubyte").read_bytes(), "t10k-images", 3)
    labels = parse_idx((mnist / "t10k-labels-idx1-ubyte").read_bytes(), "t10k-labels", 1)
    return images, labels


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_png(index: int = 0) -> tuple[bytes, int]:
    """MNIST test digit `index` as PNG bytes, and its label."""
    images, labels = mnist_test()
    return png_bytes(images[index]), int(labels[index])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app, port: int | None = None) -> Iterator[str]:
    """Run `app` on a real uvicorn in a thread; yields the base URL; stops it on exit."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
