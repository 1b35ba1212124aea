"""A data source shaped for a model: its input size, its channels and its classes, with notes.

Training, `evaluate`, `inspect` and `report` all open their data here, so the same source gives
the same arrays and the same notes whichever command reads it:

    shaped = open_for_model("faces/", (64, 64, 3), resize="letterbox")
    shaped.notes          # ["images of 'faces/' decoded to the model's input 64x64x3 (...)"]
    shaped = open_for_run(classifier.manifest, "mnist:test")   # labels as the run's classes
    chosen = shaped.choose_split()   # test, else val, else the run's held-out part, else train

The rules, one home for each:
- A folder is decoded straight to the model's input with the resize mode (its files have mixed
  sizes anyway).
- An array source (IDX, .npz) keeps its size when it fits. Otherwise it is zero-padded when the
  model's input is larger with the same aspect ratio, and resized when the aspect ratio is the
  same or a resize mode was chosen. Another aspect ratio without one is refused, so that digits
  are never squashed silently.
- Channels convert between 1 and 3 only (gray replicated, RGB averaged).
- Classes: training resizes a preset's last fc to the data's classes (`fit_classes`); a trained
  run maps the data's labels onto its own classes by name (`align_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.data.dataset import Dataset, Split, split_validation
from cnnkit.data.images import fit_images
from cnnkit.data.sources import open_source, source_folder
from cnnkit.errors import DataError
from cnnkit.spec import Spec, shape_text
from cnnkit.train_config import ARRAYS_PREFIX

SPLIT_PREFERENCE = ("test", "val", "train")  # the images a model is least likely to have seen


@dataclass
class ChosenSplit:
    """The images an evaluation uses, named for what they are."""

    name: str  # "test", "val" or "train" (--json's "split"); "val" also for a held-out fraction
    split: Split
    description: str  # "test split", "held-out validation split (10% of train, seed 0)", "all"
    note: str | None = None  # a warning when the model may have trained on these images


@dataclass
class ShapedSource:
    """A source opened for a model: every split's images are (N, H, W, C) of its input."""

    source: str  # as the user gave it
    dataset: Dataset  # its splits hold the fitted images (and, for a run, the run's labels)
    notes: list[str] = field(default_factory=list)  # what was done to the data, for the user
    fitted: bool = False  # images were padded, resized or converted: their own stats are stale
    # (fraction, seed) of the validation split a run held out of this source's train split, so
    # that `choose_split` can rebuild exactly the images it never trained on; None otherwise.
    held_out: tuple[float, int] | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    def choose_split(self, name: str | None = None) -> ChosenSplit:
        """`name`, else the first of test, val, the run's held-out part of train, and train.

        The note warns when the choice fell on images the model may have trained on.
        """
        splits = self.dataset.splits
        if name == "val" and "val" not in splits and self.held_out and "train" in splits:
            return self._held_out()
        if name is not None:
            if name not in splits:
                raise DataError(
                    f"--data {self.source} has no {name} split (only "
                    f"{', '.join(splits)}); choose one of those with --split"
                )
            return ChosenSplit(name, splits[name], self._describe(name))
        if not {"test", "val"} & set(splits) and self.held_out and "train" in splits:
            return self._held_out()
        name = next(s for s in (*SPLIT_PREFERENCE, *splits) if s in splits)
        note = None
        if name == "train":
            what = "all its images" if self._describe(name) == "all" else "its train split"
            note = (
                f"the data has no test or val split, so these are {what}: "
                f"if the model was trained on them, these figures flatter it"
            )
        return ChosenSplit(name, splits[name], self._describe(name), note)

    def _describe(self, name: str) -> str:
        """ "all" for a folder without split folders (its only split is every image)."""
        whole = list(self.dataset.splits) == ["train"] and source_folder(self.source) is not None
        if name == "train" and whole:
            return "all"
        return f"{name} split"

    def _held_out(self) -> ChosenSplit:
        """The validation images the run held out of train: same fraction, same seed, same split."""
        fraction, seed = self.held_out  # type: ignore[misc]
        _, val = split_validation(self.dataset, fraction, seed)
        assert val is not None  # a fraction always gives a val split (or raises)
        return ChosenSplit(
            "val", val, f"held-out validation split, {fraction:.0%} of train, seed {seed}"
        )


def open_for_model(
    source: str,
    input_shape: tuple[int, int, int],
    *,
    resize: str | None = None,
    data_dir: str | None = None,
    progress: bool = False,
    for_run: bool = False,
    dataset: Dataset | None = None,
) -> ShapedSource:
    """Open `source` with every image fitted to `input_shape` (H, W, C), as the module says.

    `resize` (letterbox, stretch, crop) allows another aspect ratio; None refuses one (folders
    are letterboxed). `for_run` words a refusal for a trained run ("give data shaped like the
    training data") rather than for training ("pass --input ..."). `dataset`: data already in
    memory (`cnnkit.data.arrays`), which `source` then only names.
    """
    height, width, channels = (int(n) for n in input_shape)
    shape = (height, width, channels)
    notes: list[str] = []
    if dataset is not None:
        pass  # arrays in memory: fitted below like any array source
    elif source_folder(source) is not None:
        dataset = open_source(
            source,
            data_dir=data_dir,
            size=(height, width),
            channels=channels,
            resize=resize or "letterbox",
            progress=progress,
        )
        how = resize or "letterbox"
        notes.append(
            f"images of {source!r} decoded to the run's input {shape_text(shape)} ({how})"
            if for_run
            else f"images of {source!r} decoded to the model's input {shape_text(shape)} "
            f"({how}; pass --input to train on another shape)"
        )
    else:
        dataset = open_source(source, data_dir=data_dir, progress=progress)
    notes += dataset.notes  # a folder's mixed sizes or modes, GTSRB's layout
    if dataset.skipped:  # a folder's unreadable files are skipped; say so rather than use less
        first = ", ".join(str(item["path"]) for item in dataset.skipped[:3])
        notes.append(
            f"{len(dataset.skipped)} file(s) skipped as unreadable ({first}); "
            f"'cnnkit data info {source}' lists them all"
        )
    parts = _fit_parts(source, dataset.shape, shape, resize, for_run)
    if parts:
        notes.append(f"data {source!r} fitted to the model's input: {', '.join(parts)}")
        for split in dataset.splits.values():
            split.images = fit_images(split.images, shape, resize or "letterbox")
    return ShapedSource(source, dataset, notes, fitted=bool(parts))


def open_for_run(
    manifest: dict[str, Any],
    source: str | None = None,
    *,
    data_dir: str | None = None,
    progress: bool = False,
) -> ShapedSource:
    """`open_for_model` for a trained run: its input, its resize policy, its class indices.

    `source` defaults to the run's training data. Labels are mapped onto the run's classes by
    name (`align_labels`), so `class_names` are the run's.
    """
    config = manifest.get("train_config") or {}
    if not source and str(config.get("data", "")).startswith(ARRAYS_PREFIX):
        raise DataError(
            f"the run was trained from arrays in memory ({config['data']}), which it does not "
            f"keep; give the data to evaluate on with --data (a name, folder or .npz)"
        )
    given, source = source, source or config.get("data") or "mnist-mini"
    try:
        shaped = open_for_model(
            source,
            tuple(manifest["input_shape"]),
            resize=config.get("resize"),
            data_dir=data_dir,
            progress=progress,
            for_run=True,
        )
    except DataError as error:
        if given is not None:
            raise
        # The user named no data: say that this is the run's own, which may have moved.
        raise DataError(
            f"the run's own data {source!r} (from its manifest) cannot be opened: {error}; "
            f"pass --data to use other data"
        ) from None
    run_names = [str(name) for name in manifest["class_names"]]
    for split in shaped.dataset.splits.values():
        split.labels = np.asarray(
            align_labels(shaped.dataset.class_names, run_names, split.labels, source)
        )
    shaped.dataset.class_names = run_names
    shaped.held_out = _held_out(config, source)
    return shaped


def _held_out(config: dict[str, Any], source: str) -> tuple[float, int] | None:
    """(fraction, seed) when the run validated on a fraction of `source`'s train split."""
    if source != config.get("data") or config.get("val") not in (None, ""):
        return None
    fraction = config.get("val_split")
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        return None
    return float(fraction), int(config.get("seed") or 0)


def _fit_parts(
    source: str,
    have: tuple[int, int, int],
    want: tuple[int, int, int],
    resize: str | None,
    for_run: bool,
) -> list[str]:
    """What turns images of shape `have` into `want` (H, W, C); [] when they already are."""
    (h, w, c), (height, width, channels) = have, want
    if c != channels and not (c in (1, 3) and channels in (1, 3)):
        raise _misfit(source, have, want, "channels", for_run)
    parts = []
    if c != channels:
        parts.append(
            "grayscale replicated to RGB" if channels == 3 else "RGB averaged to grayscale"
        )
    if (h, w) != (height, width):
        if height >= h and width >= w and h * width == w * height and (height - h) % 2 == 0:
            parts.append(f"zero-padded from {h}x{w} to {height}x{width}")
        elif resize is not None or h * width == w * height:
            parts.append(f"resized from {h}x{w} to {height}x{width} ({resize or 'letterbox'})")
        else:
            raise _misfit(source, have, want, "aspect", for_run)
    return parts


def _misfit(
    source: str, have: tuple[int, int, int], want: tuple[int, int, int], why: str, for_run: bool
) -> DataError:
    """The refusal to fit `have` to `want`, worded for training or for a trained run."""
    h, w, c = have
    if for_run:
        reason = (
            "cnnkit converts only 1 and 3 channels"
            if why == "channels"
            else "another aspect ratio, and the run was trained without --resize"
        )
        return DataError(
            f"--data {source}: its images are {h}x{w}x{c} but the model takes {shape_text(want)}; "
            f"{reason}; give data shaped like the training data"
        )
    fix = f"pass --input {h}x{w}x{c} to train the model on the data's own shape" + (
        ", or --resize letterbox|stretch|crop to fit the images" if c == want[2] else ""
    )
    if why == "channels":
        return DataError(
            f"the model takes {shape_text(want)} images but {source!r} has {c} channel(s); "
            f"cnnkit converts only between 1 and 3 channels; {fix}"
        )
    return DataError(
        f"the model takes {shape_text(want)} images but {source!r} holds {h}x{w}x{c}, "
        f"another aspect ratio; {fix}"
    )


def fit_classes(spec: Spec, model: str, source: str, class_names: list[str]) -> tuple[Spec, str]:
    """(spec, note) for training: a preset's last fc resized to the data's classes (noted);
    a user's spec that does not end in one score per class is refused."""
    from cnnkit import presets
    from cnnkit.plan import plan

    network = plan(spec)
    outputs = network.output_shape
    classes = len(class_names)
    if not network.layers or not network.layers[-1].flat:
        raise DataError(
            f"the model's output is {shape_text(outputs)}, not one score per class; "
            f"end it with '> flatten > fc {classes}'"
        )
    if outputs[2] == classes:
        return spec, ""
    if model in presets.PRESETS:
        note = f"preset {model!r}: last fc resized from {outputs[2]} to {classes} classes"
        return presets.with_classes(spec, classes), note
    raise DataError(
        f"the model outputs {outputs[2]} scores but {source!r} has {classes} classes; "
        f"end the spec with 'fc {classes}'"
    )


def align_labels(data_names: list[str], run_names: list[str], labels: Any, source: str) -> Any:
    """The data's labels as indices into the run's classes, matched by name.

    A folder with classes in another order, or with only some of them, still evaluates right;
    a class the model never learnt is a DataError.
    """
    data_names, run_names = [str(n) for n in data_names], [str(n) for n in run_names]
    if data_names == run_names:
        return labels
    unknown = [name for name in data_names if name not in run_names]
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        known = ", ".join(run_names[:10]) + (", ..." if len(run_names) > 10 else "")
        raise DataError(
            f"--data {source}: class(es) {shown} are not among the run's classes ({known}); "
            f"evaluate on data with the classes the model was trained on"
        )
    mapping = np.array([run_names.index(name) for name in data_names], dtype=np.int64)
    return mapping[np.asarray(labels, dtype=np.int64)]


def run_split(
    manifest: dict[str, Any], source: str | None, data_dir: str | None = None
) -> tuple[str, Any, Any]:
    """(description, images fitted to the run's model, labels as the run's class indices) of the
    split a command evaluates on: `source`'s, else the run's own data (see `choose_split`)."""
    data = open_for_run(manifest, source, data_dir=data_dir)
    chosen = data.choose_split()
    where = chosen.description
    where = f"all {len(chosen.split):,} images" if where == "all" else where
    return f"{data.source} ({where})", chosen.split.images, chosen.split.labels
