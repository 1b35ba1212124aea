"""`cnnkit plan` and `cnnkit presets` as a user runs them: golden tables, JSON, errors, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cnnkit.cli import main
from conftest import REPO, assert_golden


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("golden", "argv"),
    [
        ("plan_lenet5.txt", ["plan", "lenet5"]),
        ("plan_inception_demo.txt", ["plan", "inception-demo"]),
        (
            "plan_course_quiz.txt",
            ["plan", "32x32x3 > conv 20@8x8 s2 p1 > relu > maxpool 2 > flatten > fc 10"],
        ),
        (
            "plan_same_vs_valid.txt",
            ["plan", "28x28x1 > conv 8@5x5 s2 same > conv 8@5x5 s2 valid > gap > fc 10"],
        ),
        (
            "plan_auto_flatten.txt",
            ["plan", "28x28x1 > conv 2@3x3 s2 same > fc 10", "--auto-flatten"],
        ),
        ("presets.txt", ["presets"]),
    ],
)
def test_printed_tables_match_golden_files(capsys, golden, argv):
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert_golden(golden, out)


def test_json_document_is_stable(capsys):
    code, out, _ = run(
        capsys, "plan", "32x32x3 > conv 20@8x8 s2 p1 > relu > maxpool 2 > flatten > fc 10", "--json"
    )
    document = json.loads(out)
    assert code == 0
    assert set(document) == {"input", "spec", "layers", "totals", "notes"}
    conv = document["layers"][0]
    assert {
        "name",
        "kind",
        "output_shape",
        "neurons",
        "params",
        "params_unshared",
        "macs",
        "receptive_field",
        "jump",
    } <= set(conv)
    assert (conv["name"], conv["output_shape"], conv["params"], conv["params_unshared"]) == (
        "conv1",
        [14, 14, 20],
        3860,
        756560,
    )
    assert document["totals"]["params"] == sum(layer["params"] for layer in document["layers"])
    assert_golden("plan_course_quiz.json", out)


def test_plan_reads_a_yaml_file_with_overrides(tmp_path, capsys):
    path = tmp_path / "my_net.yaml"
    path.write_text(
        "input: [28, 28, 1]\nlayers:\n  - {type: conv, filters: 6, kernel_size: 5}\n  - {type: flatten}\n  - {type: fc, out_features: 10}\n"
    )
    code, out, _ = run(capsys, "plan", str(path), "--json", "--input", "32x32x3", "--classes", "43")
    document = json.loads(out)
    assert code == 0
    assert document["input"] == [32, 32, 3]
    assert document["layers"][-1]["output_shape"] == [1, 1, 43]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "lenet6"], "cnnkit: error: unknown preset 'lenet6'; did you mean 'lenet5'?"),
        (["plan", "4x4x1 > conv 1@5x5"], "the 5x5 filter is larger than its 4x4 input"),
        (["plan", "8x8x1 > fc 3"], "fc needs a flat input"),
        (["plan", "lenet5", "--input", "0x32x1"], "every size must be at least 1"),
        (["plan", "lenet5", "--classes", "1"], "--classes must be at least 2"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err


def test_unknown_token_error_shows_the_spec_with_a_caret(capsys):
    code, _, err = run(capsys, "plan", "28x28x1 > conv 6@5x5 > rleu")
    assert code == 2
    assert err.splitlines() == [
        "cnnkit: error: layer 2: unknown layer 'rleu'; did you mean 'relu'?",
        "  28x28x1 > conv 6@5x5 > rleu",
        "                         ^^^^",
    ]


def test_usage_errors_exit_2_in_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plan"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the following arguments are required: model" in err


def test_debug_shows_the_traceback():
    from cnnkit.errors import SpecError

    with pytest.raises(SpecError):
        main(["--debug", "plan", "lenet6"])


def test_plan_never_imports_torch_or_numpy():
    # Make torch and numpy unimportable, then run the real console entry point.
    script = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "numpy"):
                    raise ImportError(f"{name} is blocked in this test")
        sys.meta_path.insert(0, Block())
        from cnnkit.cli import main
        code = main(["plan", "lenet5", "--json"])
        assert code == 0, code
        assert "torch" not in sys.modules and "numpy" not in sys.modules
        code = main(["plan", "inception-demo"])
        assert code == 0, code
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
