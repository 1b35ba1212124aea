"""Place Fashion-MNIST's four IDX files where `--data fashion-mnist` finds them, from Debian.

    .venv/bin/python bench/get_fashion_mnist.py [--deb FILE.deb] [--out DIR]

Source: Debian's package `dataset-fashion-mnist` (bookworm/main, 0.0~git20200523.55506a9-1,
maintainer Mo Zhou), which ships the four gzipped IDX files of Zalando Research's Fashion-MNIST
in /usr/share/datasets/fashion-mnist/. Licence: MIT ("Expat"), Copyright 2017 Zalando SE; the
package's copyright file is copied beside the data, as the licence asks of every copy.

The .deb is taken from --deb, else apt's cache (/var/cache/apt/archives), else fetched with
`apt-get download dataset-fashion-mnist` (Debian's own client; `apt-get update` first on a new
machine). Nothing is installed: the .deb is read as an ar archive in Python. Debian recompressed
the gzips (their MD5s differ from the publisher's); their decompressed content matches the
SHA-256 that cnnkit's registry holds, and each file is checked against it before it is placed.

--out defaults to $CNNKIT_DATA/fashion-mnist, else the cnnkit cache (~/.cache/cnnkit/...).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from cnnkit.data.download import cache_root, check_content
from cnnkit.data.registry import REGISTRY

PACKAGE = "dataset-fashion-mnist"
INSIDE = "usr/share/datasets/fashion-mnist/"
COPYRIGHT = f"usr/share/doc/{PACKAGE}/copyright"


def find_deb(given: str | None, workdir: Path) -> Path:
    """The package file: given, in apt's cache, or downloaded by apt-get into `workdir`."""
    if given:
        return Path(given)
    cached = sorted(Path("/var/cache/apt/archives").glob(f"{PACKAGE}_*.deb"))
    if cached:
        return cached[-1]
    subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)
    return next(workdir.glob(f"{PACKAGE}_*.deb"))


def ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ar archive (a .deb is one): 8-byte magic, then 60-byte headers."""
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit("not a Debian package (no ar magic)")
    members, at = {}, 8
    while at + 60 <= len(data):
        header = data[at : at + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[at + 60 : at + 60 + size]
        at += 60 + size + (size % 2)  # members are padded to an even offset
    return members


def extract(deb: Path) -> dict[str, bytes]:
    """file name -> bytes of the four .gz files and the copyright file."""
    members = ar_members(deb.read_bytes())
    data_name = next(name for name in members if name.startswith("data.tar"))
    wanted = {}
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        for member in tar.getmembers():
            path = member.name.removeprefix("./")
            if member.isfile() and (path.startswith(INSIDE) or path == COPYRIGHT):
                wanted[Path(path).name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", help="the dataset-fashion-mnist .deb (default: apt's cache)")
    parser.add_argument("--out", help="where to place the files (default: see the docstring)")
    args = parser.parse_args()
    data_root = os.environ.get("CNNKIT_DATA")
    out = Path(args.out or (Path(data_root) if data_root else cache_root()) / "fashion-mnist")
    with tempfile.TemporaryDirectory() as workdir:
        deb = find_deb(args.deb, Path(workdir))
        files = extract(deb)
    out.mkdir(parents=True, exist_ok=True)
    for remote in REGISTRY["fashion-mnist"].files.values():
        raw = files[f"{remote.name}.gz"]
        _, record, problem = check_content(bytearray(raw), remote)
        if problem or not record["verified"]:
            raise SystemExit(f"{deb}: {remote.name}.gz: {problem or 'not verified'}")
        temp = out / f".{remote.name}.gz.part"
        temp.write_bytes(raw)
        temp.replace(out / f"{remote.name}.gz")
        print(f"{out / remote.name}.gz  content sha256 {record['sha256'][:16]}... verified")
    (out / "COPYRIGHT").write_bytes(files["copyright"])
    print(f"from {deb.name}; licence MIT (Zalando SE), see {out / 'COPYRIGHT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
