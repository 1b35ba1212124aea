"""Build a folder of real colour photo crops for the photo benchmark: 6 classes, train and test.

    .venv/bin/python bench/make_photo_folder.py OUT [--per-class 60] [--test-per-class 20]
        [--size 64] [--seed 0] [--wheels DIR ...]

Each class is one real photograph; its images are square crops of it (sides 18-35% of the
photo's shorter side, resized to --size x --size with Pillow's Lanczos filter). The photo is cut
into a 3x3 grid; one cell of each row (a seeded choice) gives the test crops, the other six the
training crops, and every crop lies inside one cell: no test crop shares a pixel with a training
crop, and both splits see the top, middle and bottom of the photo. The output is OUT/train/<class>/NNN.png and OUT/test/<class>/NNN.png
(the layout cnnkit's folder source reads as train and test splits), plus OUT/SOURCES.txt with
the attributions below. The same arguments give the same files (seeded NumPy, PNG has no
timestamp). Defaults: 360 training and 120 test images.

The photographs ship inside two PyPI packages, read from the installed package or, if it is not
installed, straight from its wheel (nothing is installed); this machine has the wheels in
/opt/pypi/files. Elsewhere: `pip download --no-deps scikit-image==0.26.0 scikit-learn -d DIR`
and pass `--wheels DIR`.

| class     | file (package)                       | source and licence                                 |
| astronaut | skimage/data/astronaut.png (scikit-image) | NASA Great Images (Eileen Collins); public domain |
| cat       | skimage/data/chelsea.png (scikit-image)   | Stefan van der Walt; CC0                     |
| coffee    | skimage/data/coffee.png (scikit-image)    | Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0 |
| rocket    | skimage/data/rocket.jpg (scikit-image)    | SpaceX (DSCOVR launch); public domain        |
| china     | sklearn/datasets/images/china.jpg (scikit-learn) | danielbuechele on Flickr; CC BY 2.0   |
| flower    | sklearn/datasets/images/flower.jpg (scikit-learn) | vultilion on Flickr; CC BY 2.0       |

The licences are those stated by the packages (skimage.data's docstrings; sklearn's
datasets/images/README.txt, whose flower.jpg entry repeats danielbuechele in its attribution line
but links vultilion's photo stream, taken here as the photographer). CC BY 2.0 asks for attribution and a note of changes: the crops are
cropped and resized from the originals, which SOURCES.txt says.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# class -> (distribution, file inside the package, attribution); see the table above.
PHOTOS = {
    "astronaut": ("scikit_image", "skimage/data/astronaut.png", "NASA (Eileen Collins); public domain"),
    "cat": ("scikit_image", "skimage/data/chelsea.png", "Stefan van der Walt; CC0"),
    "coffee": ("scikit_image", "skimage/data/coffee.png", "Rachel Michetti (Pikolo Espresso Bar); CC0"),
    "rocket": ("scikit_image", "skimage/data/rocket.jpg", "SpaceX; public domain"),
    "china": ("scikit_learn", "sklearn/datasets/images/china.jpg", "danielbuechele on Flickr; CC BY 2.0"),
    "flower": ("scikit_learn", "sklearn/datasets/images/flower.jpg", "vultilion on Flickr; CC BY 2.0"),
}  # fmt: skip
WHEEL_DIRS = ("/opt/pypi/files", "/opt/pypi-more/files")
GRID = 3  # cells per side; one cell of each row holds test crops
SIDES = (0.18, 0.35)  # crop side, as fractions of the photo's shorter side


def read_photo(distribution: str, inside: str, wheel_dirs: list[str]) -> Image.Image:
    """The photo from the installed package, else from the newest wheel found in `wheel_dirs`."""
    top = inside.split("/")[0]
    spec = importlib.util.find_spec(top)  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))).parent / inside
        if path.is_file():
            return Image.open(path).convert("RGB")
    wheels = sorted(w for d in wheel_dirs for w in Path(d).glob(f"{distribution}-*.whl"))
    for wheel in reversed(wheels):
        with zipfile.ZipFile(wheel) as archive:
            if inside in archive.namelist():
                return Image.open(io.BytesIO(archive.read(inside))).convert("RGB")
    raise SystemExit(
        f"{inside}: not installed and no {distribution} wheel in {', '.join(wheel_dirs)}; run "
        f"pip download --no-deps scikit-image==0.26.0 scikit-learn -d DIR and pass --wheels DIR"
    )


def cells(photo: Image.Image, rng) -> dict[str, list[tuple[int, int, int, int]]]:
    """'train' and 'test' -> the grid cells (left, top, right, bottom) of each split."""
    width, height = photo.size
    xs = [width * i // GRID for i in range(GRID + 1)]
    ys = [height * i // GRID for i in range(GRID + 1)]
    split: dict[str, list[tuple[int, int, int, int]]] = {"train": [], "test": []}
    for row in range(GRID):
        test_column = int(rng.integers(GRID))
        for column in range(GRID):
            cell = (xs[column], ys[row], xs[column + 1], ys[row + 1])
            split["test" if column == test_column else "train"].append(cell)
    return split


def crops(photo: Image.Image, where: list, count: int, size: int, rng) -> list[Image.Image]:
    """`count` square crops, each inside one of the cells `where`, resized to `size`."""
    out = []
    for _ in range(count):
        left, top, right, bottom = where[int(rng.integers(len(where)))]
        side = int(rng.uniform(*SIDES) * min(photo.size))
        side = min(side, right - left, bottom - top)
        x = int(rng.integers(left, right - side + 1))
        y = int(rng.integers(top, bottom - side + 1))
        crop = photo.crop((x, y, x + side, y + side))
        out.append(crop.resize((size, size), Image.Resampling.LANCZOS))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the folder to write (train/ and test/ inside)")
    parser.add_argument("--per-class", type=int, default=60, help="training crops per class")
    parser.add_argument("--test-per-class", type=int, default=20, help="test crops per class")
    parser.add_argument("--size", type=int, default=64, help="crop side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wheels", nargs="*", default=list(WHEEL_DIRS), help="wheel folders")
    args = parser.parse_args()
    out = Path(args.out)
    lines = ["Real photo crops made by bench/make_photo_folder.py (cropped and resized):"]
    for index, (name, (distribution, inside, credit)) in enumerate(PHOTOS.items()):
        photo = read_photo(distribution, inside, args.wheels)
        rng = np.random.default_rng([args.seed, index])
        split = cells(photo, rng)
        for part, count in (("train", args.per_class), ("test", args.test_per_class)):
            folder = out / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for number, crop in enumerate(crops(photo, split[part], count, args.size, rng)):
                crop.save(folder / f"{number:03d}.png")
        lines.append(f"{name}: {inside} ({distribution.replace('_', '-')}), {credit}")
    (out / "SOURCES.txt").write_text("\n".join(lines) + "\n")
    total = len(PHOTOS) * (args.per_class + args.test_per_class)
    print(f"{out}: {total} crops of {args.size}x{args.size}, {len(PHOTOS)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
