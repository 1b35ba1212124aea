"""The notebook API: build, fit, load, evaluate and predict, as `import cnnkit` exposes them.

Each function imports torch (or NumPy) inside itself, so `import cnnkit` stays light and
`cnnkit plan` never loads torch; the work is done by the modules each one names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnkit.network import Network
    from cnnkit.spec import Spec
    from cnnkit.train_loop import FitResult, Hooks


def build(spec: Spec | str, seed: int | None = None) -> Network:
    """The torch model (`cnnkit.network.Network`) of a spec, preset name or notation string.

    >>> model = cnnkit.build("28x28x1 > conv 8@3x3 same > relu > gap > fc 10", seed=0)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    from cnnkit.network import build as build_network

    return build_network(spec, seed=seed)


def fit(
    data: Any = "mnist-mini",
    model: str | None = None,
    *,
    test: Any = None,
    class_names: Sequence[str] | None = None,
    hooks: Hooks | None = None,
    **options: Any,
) -> FitResult:
    """Train `model` on `data` into a run directory; returns a FitResult whose repr is one line.

    Args:
        data: a data set name ("mnist", "mnist-mini"), an image folder, an .npz path, or arrays
            `(x, y)` in memory: images uint8 or float, (N, H, W) or (N, H, W, C) with C 1 or 3
            (channels last); floats are read as [0, 1], whole numbers 0..255 of any dtype as
            pixel values; labels integers 0..K-1 of shape (N,). See `cnnkit.data.arrays`.
        model: a preset ("digits", "lenet5"), '>' notation, a spec file, or a run directory to
            start from (the same as `from_run=`). Default: the `digits` preset's recipe.
        test: `(x_test, y_test)` for array data; `val="test"` then validates on it.
        class_names: names of array data's classes (default "0", "1", ...).
        hooks: `cnnkit.train.Hooks` to watch progress.
        options: any `cnnkit.train.TrainConfig` field: epochs=3, lr=0.1, val="test", out="runs/x",
            overwrite=True, from_run="runs/digits", freeze=True, threads=2, ...

    A run trained from arrays records its data as "<arrays 1000x28x28x1>": it cannot reopen
    them, so `evaluate` needs data and resuming it is refused.

    >>> result = cnnkit.fit("mnist-mini", epochs=1, out="runs/notebook", overwrite=True)
    >>> result
    FitResult(run='runs/notebook', model='digits', best_val_acc=0.9655, ...)
    >>> cnnkit.fit((x, y), model="28x28x1 > conv 8@3x3 > relu > gap > fc 10", val_split=0.2)
    """
    from cnnkit import train, transfer
    from cnnkit.data.arrays import arrays_dataset, describe, is_arrays

    model, from_run = transfer.model_and_source(model, options.pop("from_run", None))
    if is_arrays(data) or isinstance(data, (tuple, list)):
        names = list(class_names) if class_names is not None else None
        dataset = arrays_dataset(data, test=test, class_names=names)
        options.update(data=describe(dataset), arrays=dataset)
    elif test is not None or class_names is not None:
        raise _only_for_arrays(data)
    else:
        options["data"] = os.fspath(data)
    config = train.TrainConfig.for_model(model, from_run=from_run, **options)
    return train.fit(config, hooks)


def _only_for_arrays(data: Any) -> Exception:
    from cnnkit.errors import ConfigError

    return ConfigError(
        f"test= and class_names= are for data given as arrays (x, y); {data!r} brings its own"
    )


def load(path: str | os.PathLike, device: Any = "cpu", **onnx_options: Any) -> Any:
    """A trained model ready for images: a run directory (torch) or an .onnx file (no torch).

    >>> classifier = cnnkit.load("runs/mnist")
    >>> classifier.predict("seven.png", top_k=3)[0]["top"][0]
    {'class': '7', 'prob': 0.998}
    """
    from cnnkit.onnx_runtime import load as load_any

    return load_any(path, device=device, **onnx_options)


def evaluate(
    run: str | os.PathLike,
    data: Any = None,
    *,
    split: str | None = None,
    device: Any = "cpu",
    threads: int | None = None,
) -> dict[str, Any]:
    """Accuracy, loss, per-class scores and confusions of a run (`cnnkit evaluate`) as a dict.

    `data` defaults to the run's own training source (its test split, else val, else train);
    give a name, folder, .npz path or arrays `(x, y)` (labels as the run's class indices).

    >>> report = cnnkit.evaluate("runs/mnist", "mnist:test")
    >>> report["accuracy"]
    0.9921
    """
    from cnnkit.data.arrays import arrays_split, is_arrays
    from cnnkit.data.shaped import open_for_run
    from cnnkit.devices import thread_count
    from cnnkit.predict import load as load_run

    classifier = load_run(run, device=device)
    with thread_count(threads):
        if is_arrays(data):
            images = arrays_split(*data)
            return classifier.evaluate(images.images, images.labels)
        shaped = open_for_run(classifier.manifest, None if data is None else os.fspath(data))
        chosen = shaped.choose_split(split)
        report = classifier.evaluate(chosen.split.images, chosen.split.labels)
    described = {"split": chosen.name, "split_description": chosen.description}
    return {**described, **({"note": chosen.note} if chosen.note else {}), **report}


def predict(
    model: str | os.PathLike | Any,
    images: Any,
    top_k: int = 5,
    *,
    device: Any = "cpu",
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """The top-k classes of images: paths, PIL images or uint8 arrays, one or a list.

    `model` is a run directory, an .onnx file, or a model `cnnkit.load` returned.

    >>> cnnkit.predict("runs/mnist", ["seven.png", "two.png"], top_k=2)[0]["top"]
    [{'class': '7', 'prob': 0.998}, {'class': '1', 'prob': 0.001}]
    """
    from cnnkit.onnx_runtime import OnnxClassifier, is_onnx_path, load_onnx
    from cnnkit.threads import check_threads, default_threads

    check_threads(threads)
    if isinstance(model, (str, os.PathLike)) and is_onnx_path(model):
        model = load_onnx(model, threads=threads or default_threads())
    if isinstance(model, OnnxClassifier):  # ONNX Runtime: its threads are the session's
        return model.predict(images, top_k=top_k)
    if isinstance(model, (str, os.PathLike)):
        model = load(model, device=device)
    from cnnkit.devices import thread_count

    with thread_count(threads):
        return model.predict(images, top_k=top_k)
