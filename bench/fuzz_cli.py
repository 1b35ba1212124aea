"""Fuzz the CLI's inputs for some minutes and count tracebacks (issue 11's goal: 0 in 10 minutes).

Each case runs `python -m cnnkit ...` in its own process with mutated input: notation, spec files
(YAML/JSON, deep, wide, aliased), train options, run manifests (for `predict`) and image bytes.
A case fails when its stderr holds "Traceback" or it exits with neither 0, 2 nor 130; a case
that runs past its timeout is counted apart (a valid `train` may simply be training).

Run: .venv/bin/python bench/fuzz_cli.py [--minutes 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SPECS = [
    "28x28x1 > conv 6@5x5 s1 same > relu > maxpool 2 > flatten > fc 10",
    "32x32x3 > res 16 s2 > gap > fc 10",
    "28x28x1 > inception 8,4>8,2>4,4 > gap > dropout 0.5 > fc 10",
]
ODD = ["²", "٣", "9" * 13, "9" * 5000, "-1", "\n", "\x00", "é", ">", "@", "x", " ", "nan", "1e308"]
TRAIN_OPTIONS = ["--seed", "--lr", "--input", "--epochs", "--batch-size", "--val-split", "--model"]
VALUES = ["-1", "0", "1e308", "nan", "99999999999999999999999", "4000x4000x1", "²", "", "1x1x1",
          "0.0", "28x28x1 > flatten > fc 2147483647 > fc 10", "2x2x1 > fc 2"]  # fmt: skip


def mutate(text: str, rng: random.Random) -> str:
    """A few random edits: insert an odd piece, delete a span, repeat a span."""
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(text))
        action = rng.random()
        if action < 0.5:
            text = text[:at] + rng.choice(ODD) + text[at:]
        elif action < 0.75:
            text = text[:at] + text[at + rng.randint(1, 8) :]
        else:
            piece = text[at : at + rng.randint(1, 12)]
            text = text[:at] + piece * rng.randint(2, 300) + text[at:]
    return text


def spec_document(rng: random.Random) -> str:
    depth = rng.choice([1, 10, 70, 1_000, 5_000])
    layers: object = [{"type": "relu"}] * rng.choice([1, 10, 2_000])
    for _ in range(min(depth, 200)):
        layers = [layers]
    document = {"input": [28, 28, rng.choice([1, 10**20, -1])], "layers": layers}
    text = json.dumps(document)
    if depth > 200:
        text = text.replace('"layers": ', '"layers": ' + "[" * depth, 1) + "]" * depth
    if rng.random() < 0.3:
        text = "a: &a [1, 2]\nb: &b [*a, *a, *a]\ninput: [*b, *b]\nlayers: []\n"
    return mutate(text, rng) if rng.random() < 0.5 else text


def image_bytes(rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((28, 28)).save(buffer, format=rng.choice(["PNG", "JPEG"]))
    data = bytearray(buffer.getvalue())
    for _ in range(rng.randint(0, 6)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[: rng.randint(1, len(data))])


def make_case(rng: random.Random, work: Path, run: Path) -> list[str]:
    kind = rng.choice(["plan", "spec-file", "train", "predict"])
    if kind == "plan":
        return ["plan", mutate(rng.choice(SPECS), rng)]
    if kind == "spec-file":
        path = work / rng.choice(["s.json", "s.yaml"])
        path.write_text(spec_document(rng), encoding="utf-8", errors="replace")
        return ["plan", str(path)]
    if kind == "train":
        option = rng.choice(TRAIN_OPTIONS)
        value = mutate(rng.choice(VALUES), rng) if rng.random() < 0.3 else rng.choice(VALUES)
        return ["train", "--epochs", "1", "--out", str(work / "out"), "--overwrite", option, value]
    original = (run / "cnnkit.json.orig").read_text()
    manifest = json.loads(original)
    field = rng.choice(["class_names", "preprocessing", "weights", "spec", "input_shape"])
    manifest[field] = rng.choice(
        [None, "x", 10**30, [], {}, ["a\nb"], {"mean": [1e308], "std": [1e-300]}, [[[[[]]]]]]
    )
    # Either one field replaced by an odd value, or the whole text mutated (often invalid JSON).
    text = mutate(original, rng) if rng.random() < 0.3 else json.dumps(manifest)
    (run / "cnnkit.json").write_text(text, encoding="utf-8", errors="replace")
    (work / "x.png").write_bytes(image_bytes(rng))
    return ["predict", str(run), str(work / "x.png")]


def tiny_run(folder: Path) -> Path:
    from cnnkit import runs
    from cnnkit.network import build
    from cnnkit.spec import parse

    spec = "28x28x1 > conv 2@5x5 > relu > flatten > fc 3"
    run = runs.prepare_run_dir(folder / "run")
    runs.save_model(
        run, build(spec, seed=0), runs.make_manifest(parse(spec), ["a", "b", "c"], [0.5], [0.25])
    )
    (run / "cnnkit.json.orig").write_text((run / "cnnkit.json").read_text())
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = {"cases": 0, "tracebacks": 0, "bad_exit": 0, "timeouts": 0}
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        run = tiny_run(work)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            # An argument cannot hold NUL, and one is at most 128 KiB (Linux MAX_ARG_STRLEN).
            argv = [arg.replace("\x00", "0")[:30_000] for arg in make_case(rng, work, run)]
            counts["cases"] += 1
            try:
                done = subprocess.run([sys.executable, "-m", "cnnkit", *argv], capture_output=True,
                                      text=True, errors="replace", env=env, timeout=30)  # fmt: skip
            except subprocess.TimeoutExpired:
                counts["timeouts"] += 1
                continue
            if "Traceback" in done.stderr or done.returncode not in (0, 2, 130):
                counts["tracebacks" if "Traceback" in done.stderr else "bad_exit"] += 1
                print(f"FAIL rc={done.returncode} argv={json.dumps(argv)[:300]}", file=sys.stderr)
                print(done.stderr[-1500:], file=sys.stderr)
    print(json.dumps({"minutes": args.minutes, "seed": args.seed, **counts}))
    return 1 if counts["tracebacks"] or counts["bad_exit"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
