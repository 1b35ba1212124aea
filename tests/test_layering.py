"""The layering STYLE.md asks for, checked on the source: pure cores and leaf shells."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from conftest import REPO

SRC = REPO / "src" / "cnnkit"
PURE = [
    "shapes.py", "spec.py", "spec_layers.py", "plan.py", "presets.py", "render.py", "solve.py",
    "errors.py", "train_config.py", "augment.py", "threads.py", "budgets.py",
]  # fmt: skip


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_planner_core_imports_only_the_standard_library_and_itself():
    for name in PURE:
        for module in imported_modules(SRC / name):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or top == "cnnkit" or top == "yaml", (
                f"{name} imports {module}"
            )
            if top == "cnnkit":
                assert module.removeprefix("cnnkit.") + ".py" in PURE or module == "cnnkit", (
                    f"{name} imports {module}"
                )


def test_cli_and_serve_are_leaves():
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith(("cli/", "serve/")) or relative == "__main__.py":
            continue
        for module in imported_modules(path):
            assert not module.startswith(("cnnkit.cli", "cnnkit.serve")), (
                f"{relative} imports {module}"
            )


def test_cli_and_serve_import_no_torch():
    """The leaves translate: whatever needs torch lives in the library they call."""
    for folder in ("cli", "serve"):
        for path in (SRC / folder).rglob("*.py"):
            for module in imported_modules(path):
                assert module.split(".")[0] != "torch", (
                    f"{path.relative_to(SRC).as_posix()} imports {module}"
                )


def test_ruff_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The torch-free runtime (`pip install cnnkit[runtime]`): these must import without torch.
TORCH_FREE = [
    "cnnkit.preprocess", "cnnkit.onnx_runtime", "cnnkit.data.images", "cnnkit.cli",
    "cnnkit.inspect.predictor", "cnnkit.serve.app", "cnnkit.serve.server",
]  # fmt: skip


@pytest.mark.slow
def test_the_onnx_runtime_path_imports_no_torch():
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import importlib\nfor name in {TORCH_FREE!r}:\n    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules\nprint('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_no_cli_module_imports_another_but_the_shared_types():
    for path in (SRC / "cli").glob("*.py"):
        for module in imported_modules(path):
            if module.startswith("cnnkit.cli.") and path.name != "__init__.py":
                assert module == "cnnkit.cli.types", f"cli/{path.name} imports {module}"
