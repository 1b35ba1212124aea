"""README.md's console blocks show real output: each command is re-run and compared."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from readme_blocks import blocks, output_of  # noqa: E402

BLOCKS = blocks((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_has_console_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize(("command", "shown"), BLOCKS, ids=[command for command, _ in BLOCKS])
def test_readme_output_is_real(command, shown):
    assert output_of(command) == shown, (
        f"README.md is stale for '{command}'; run scripts/readme_blocks.py"
    )
