"""Re-run every `$ cnnkit ...` command in README.md's ```console blocks and refresh its output.

The test tests/test_readme.py runs the same commands and fails when README.md is stale, so the
tour always shows real output. Run: .venv/bin/python scripts/readme_blocks.py
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```console\n\$ (cnnkit [^\n]*)\n(.*?)```", re.S)


def output_of(command: str) -> str:
    """What the command prints on stdout, run in-process."""
    from cnnkit.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(shlex.split(command)[1:])
    return buffer.getvalue()


def blocks(text: str) -> list[tuple[str, str]]:
    return [(match[1], match[2]) for match in BLOCK.finditer(text)]


def refresh(text: str) -> str:
    return BLOCK.sub(lambda m: f"```console\n$ {m[1]}\n{output_of(m[1])}```", text)


if __name__ == "__main__":
    README.write_text(refresh(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"refreshed {len(blocks(README.read_text(encoding='utf-8')))} blocks in {README}")
