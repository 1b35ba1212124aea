"""`solve`: the course's quizzes run backwards, every answer re-checked, errors, golden text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnkit.cli import main
from cnnkit.errors import ConfigError, SpecError
from cnnkit.render_explain import render_solutions
from cnnkit.shapes import output_size
from cnnkit.solve import Solution, solve
from conftest import assert_golden


def triples(solutions: list[Solution]) -> list[tuple[int, int, str]]:
    return [(s.filter, s.stride, s.padding) for s in solutions]


def padding(solution: Solution) -> str | int:
    """'valid' | 'same' | 'pN' back to shapes' "valid" | "same" | N."""
    text = solution.padding
    return text if text in ("valid", "same") else int(text[1:])


def test_course_quiz_4x4_to_2x2x3() -> None:
    solutions = solve("4x4x1", "2x2x3")
    assert (2, 2, "valid") in triples(solutions)  # the course quiz
    assert (3, 1, "valid") in triples(solutions)
    quiz = next(s for s in solutions if (s.filter, s.stride, s.padding) == (2, 2, "valid"))
    assert (quiz.filters, quiz.params, quiz.exact) == (3, (2 * 2 * 1 + 1) * 3, True)


def test_tensorflow_quiz_same_padding_means_stride_2() -> None:
    """28x28x3 -> 14x14x20 with SAME padding: ceil(28/S) = 14 only for S = 2, whatever the filter."""
    same = [s for s in solve("28x28x3", "14x14x20") if s.padding == "same"]
    assert {s.stride for s in same} == {2}
    assert [s.filter for s in same] == list(range(1, 12))
    assert all(s.filters == 20 and s.params == (s.filter**2 * 3 + 1) * 20 for s in same)


def test_course_conv_32_to_14() -> None:
    """32x32, F=8, S=2, P=1 gives 14x14, as in the course."""
    assert (8, 2, "p1") in triples(solve("32x32x3", "14x14x6"))


def test_every_solution_maps_in_onto_out_and_none_is_missed() -> None:
    """Brute force over the same space, through shapes.output_size directly."""
    found = set(triples(solve("9x7x2", "3x3x4", max_filter=6)))
    expected = set()
    for f in range(1, 7):
        for s in range(1, 7):
            for padding in ["valid", "same", *range(1, f)]:
                if output_size(9, f, s, padding) == 3 and output_size(7, f, s, padding) == 3:
                    name = padding if isinstance(padding, str) else f"p{padding}"
                    expected.add((f, s, name))
    assert found == expected and found


def test_sorted_by_filter_then_stride_then_padding() -> None:
    rank = {"valid": 0, "same": 1}
    keys = [
        (s.filter, s.stride, rank.get(s.padding) if s.padding in rank else 1 + padding(s))
        for s in solve("16x16x1", "8x8x1")
    ]
    assert keys == sorted(keys)


def test_pool_keeps_depth_and_has_no_parameters() -> None:
    solutions = solve("4x4x3", "2x2x3", kind="pool")
    assert (2, 2, "valid") in triples(solutions)
    assert all(s.params == 0 and s.filters == 3 for s in solutions)


def test_rectangular_shapes() -> None:
    """H and W differ: a single (F, S, padding) must map both."""
    solutions = solve("8x6x1", "4x3x1")
    assert (2, 2, "valid") in triples(solutions)
    for s in solutions:
        assert output_size(8, s.filter, s.stride, padding(s)) == 4
        assert output_size(6, s.filter, s.stride, padding(s)) == 3


def test_no_solution_is_an_empty_list() -> None:
    assert solve("4x4x1", "20x20x3") == []


def test_tuple_shapes() -> None:
    assert solve((4, 4, 1), (2, 2, 3)) == solve("4x4x1", "2x2x3")


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            ("4x4", "2x2x3"),
            SpecError,
            r"IN shape '4x4' is malformed .*: expected HxWxC such as 28x28x1",
        ),
        (
            ("4x4x1", "abc"),
            SpecError,
            r"^OUT shape 'abc' is malformed: expected HxWxC such as 28x28x1$",
        ),
        (
            ("4x4x1", "2x2x3", "pool"),
            SpecError,
            r"pooling keeps the depth, but IN has depth 1 and OUT has 3; give OUT a depth of 1, "
            r"or use --kind conv",
        ),
        (("4x4x1", "2x2x3", "fc"), ConfigError, r"--kind 'fc' must be conv or pool"),
        (("4x4x1", "2x2x3", "conv", 0), ConfigError, r"--max-filter 0 must be between 1 and 64"),
        (
            ("4x4x1", "2x2x3", "conv", 500),
            ConfigError,
            r"--max-filter 500 must be between 1 and 64",
        ),
    ],
)
def test_errors(args, error, match) -> None:
    with pytest.raises(error, match=match):
        solve(*args)


# ----------------------------------------------------------------------------- rendering and CLI


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("solve_course_quiz.txt", ("4x4x1", "2x2x3", "conv", 3)),
        ("solve_tensorflow_quiz.txt", ("28x28x3", "14x14x20", "conv", 5)),
        ("solve_pool.txt", ("4x4x3", "2x2x3", "pool", 2)),
        ("solve_none.txt", ("4x4x1", "20x20x3", "conv", 11)),
    ],
)
def test_golden_text(name, args) -> None:
    assert_golden(name, render_solutions(solve(*args), *args))


def test_cli_json(capsys) -> None:
    assert main(["solve", "4x4x1", "2x2x3", "--max-filter", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {
        "filter": 2,
        "stride": 2,
        "padding": "valid",
        "filters": 3,
        "params": 15,
        "exact": True,
    } in data


def test_cli_no_solution_exits_1(capsys) -> None:
    assert main(["solve", "4x4x1", "20x20x3"]) == 1
    assert "; try a larger --max-filter\n" in capsys.readouterr().out  # pooling keeps depth 1
    assert main(["solve", "28x28x3", "14x13x20"]) == 1
    assert "no square filter and stride can" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["solve", "28x28", "14x14x20"], "IN shape '28x28' is malformed"),
        (["solve", "4x4x1", "2x2x3", "--kind", "pool"], "pooling keeps the depth"),
        (["solve", "4x4x1", "2x2x3", "--max-filter", "0"], "--max-filter 0 must be between"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, match) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and match in lines[0]


def test_solve_imports_neither_numpy_nor_torch() -> None:
    """The fast path: `cnnkit solve` must start without loading NumPy or torch."""
    code = (
        "import sys\n"
        "from cnnkit.cli import main\n"
        "main(['solve', '4x4x1', '2x2x3'])\n"
        "heavy = [m for m in ('numpy', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
