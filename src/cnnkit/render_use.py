"""Text for `cnnkit evaluate` and `cnnkit predict`: the dicts of metrics/predict in, str out.

Pure Python; the numbers are computed in `cnnkit.metrics` and `cnnkit.predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.render import count, table

MATRIX_MAX_CLASSES = 20  # wider than a terminal beyond this; --json still has the whole matrix
MATRIX_NAME_WIDTH = 6
SPLITS = (
    "train",
    "val",
    "test",
)  # a split named by its key alone; others are described  # longer class names become column numbers in the matrix header


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def render_evaluation(
    report: dict[str, Any],
    run: str,
    data: str,
    split: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The evaluate report: headline, per-class table, confusion matrix and worst mistakes."""
    loss = report.get("loss")
    images = count(report["count"])
    if split == "all":  # a source without splits: every image of it, not a "train split"
        where = f"all {images} images"
    elif split:
        where = f"{split}{' split' if split in SPLITS else ''}, {images} images"
    else:
        where = f"{images} images"
    lines = [
        f"run:      {run}",
        f"data:     {data} ({where})",
        f"accuracy: {percent(report['accuracy'], 2)} "
        f"({count(report['correct'])} of {count(report['count'])} right)",
        f"loss:     {'-' if loss is None else f'{loss:.4f}'} (mean negative log-likelihood)",
        "",
        _class_table(report),
        *_left_out(report),
        "",
        _matrix(report),
    ]
    confused = report.get("confused") or []
    if confused:
        lines += ["", "most confused (true -> predicted):", _confused_table(confused)]
    if notes:
        lines += ["", *(f"note: {note}" for note in notes)]
    return "\n".join(lines)


def _class_table(report: dict[str, Any]) -> str:
    # A class without images has no recall (nor F1): "-" rather than a 0 that reads as a failure.
    rows = [
        [
            c["name"],
            percent(c["precision"]),
            percent(c["recall"] if c["support"] else None),
            percent(c["f1"] if c["support"] else None),
            count(c["support"]),
        ]
        for c in report["classes"]
    ]
    macro = report["macro"]
    rows.append(
        [
            "macro avg",
            percent(macro["precision"]),
            percent(macro["recall"]),
            percent(macro["f1"]),
            count(report["count"]),
        ]
    )
    return table(
        ["class", "precision", "recall", "F1", "support"],
        rows,
        right=[False, True, True, True, True],
    )


def _left_out(report: dict[str, Any]) -> list[str]:
    """The line under the class table when the macro averages skipped classes without images."""
    left_out = report.get("classes_without_images", 0)
    if not left_out:
        return []
    kept = len(report["classes"]) - left_out
    noun = "class" if left_out == 1 else "classes"
    return [
        f"macro avg: over the {kept} classes with images ({left_out} {noun} without images left out)"
    ]


def _matrix(report: dict[str, Any]) -> str:
    """Rows are true classes, columns predicted; zeros print as '.' so the mistakes stand out."""
    names = [c["name"] for c in report["classes"]]
    if len(names) > MATRIX_MAX_CLASSES:
        return (
            f"confusion matrix: {len(names)} classes are too many to print; "
            f"see 'confusion' in --json"
        )
    short = all(len(name) <= MATRIX_NAME_WIDTH for name in names)
    columns = names if short else [str(i) for i in range(len(names))]
    labels = names if short else [f"{i} {name}" for i, name in enumerate(names)]
    rows = [
        [label, *(f"{n:,}" if n else "." for n in row)]
        for label, row in zip(labels, report["confusion"], strict=True)
    ]
    title = "confusion matrix (rows: true class, columns: predicted"
    title += ")" if short else " class number)"
    return title + "\n" + table(["true"] + columns, rows, right=[False] + [True] * len(columns))


def _confused_table(confused: Sequence[dict[str, Any]]) -> str:
    rows = [[c["true"], c["predicted"], count(c["count"]), percent(c["share"])] for c in confused]
    return table(["true", "predicted", "count", "of true"], rows, right=[False, False, True, True])


def render_predictions(results: Sequence[dict[str, Any]]) -> str:
    """Each input on its own line, then its top classes with probabilities, or its error.

    The count of failures goes to stderr (the command), so stdout holds only the results.
    """
    width = max((len(entry["class"]) for result in results for entry in result["top"]), default=0)
    lines: list[str] = []
    for number, result in enumerate(results, start=1):
        lines.append(result["file"] if result["file"] is not None else f"image {number}")
        if result["error"] is not None:
            lines.append(f"  error: {result['error']}")
            continue
        for entry in result["top"]:
            lines.append(f"  {entry['class'].ljust(width)}  {percent(entry['prob'], 2):>7}")
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """12.3 s under two minutes, else 4m05s; '-' for none."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def render_runs(rows: Sequence[Any], directory: str) -> str:
    """`cnnkit runs`: one line per run (`runs_table.RunRow`), then the unreadable ones."""
    if not rows:
        return f"no runs in {directory} (train one with 'cnnkit train --out {directory}/NAME')"
    good = [row for row in rows if row.problem is None]
    lines = [
        table(
            ["run", "model", "data", "best acc", "time", "images/s", "from"],
            [
                [
                    row.name,
                    row.model,
                    row.data,
                    percent(row.best_acc, 2),
                    duration(row.train_s),
                    count(None if row.images_per_s is None else round(row.images_per_s)),
                    row.origin or "-",
                ]
                for row in good
            ],
            right=[False, False, False, True, True, True, False],
        )
    ]
    lines += [f"{row.name}: unreadable: {row.problem}" for row in rows if row.problem is not None]
    return "\n".join(lines)


def render_input_notes(results: Sequence[dict[str, Any]], most: int = 8) -> list[str]:
    """Each distinct note of `predict`'s results once, with how many images it concerns.

    "note: 3 of 5 images: colour, made grey for this 28x28x1 model"; a note of one named image
    names it. At most `most` lines, then one that says how many more (--json has each image's).
    """
    images: dict[str, list[str | None]] = {}
    for result in results:
        for note in result.get("notes") or ():
            images.setdefault(note, []).append(result["file"])
    lines = []
    for note, files in list(images.items())[:most]:
        if len(files) == 1 and files[0] is not None:
            lines.append(f"note: {files[0]}: {note}")
        else:
            lines.append(f"note: {len(files)} of {len(results)} images: {note}")
    if len(images) > most:
        lines.append(f"note: {len(images) - most} other notes; --json lists each image's")
    return lines
