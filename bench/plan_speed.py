"""How fast the planner answers: the whole `cnnkit plan lenet5` process, and a 200-layer plan.

Goals (issue 2): the process finishes in at most 0.25 s; a 200-layer plan computes in at most 50 ms.
Run: .venv/bin/python bench/plan_speed.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from cnnkit.plan import plan
from cnnkit.render import render_plan
from cnnkit.spec import parse

CNNKIT = str(Path(sys.executable).with_name("cnnkit"))


def process_seconds(argv: list[str], runs: int = 20) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def deep_spec(layers: int) -> str:
    # conv / bn / relu triples at same padding keep the shape, so any depth plans.
    body = " > ".join(["conv 16@3x3 same", "bn", "relu"] * (layers // 3))
    return f"32x32x3 > {body} > gap > fc 10"


def main() -> None:
    times = process_seconds([CNNKIT, "plan", "lenet5"])
    print(
        f"cnnkit plan lenet5 (whole process, {len(times)} runs): median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    baseline = process_seconds([sys.executable, "-c", "pass"])
    print(f"baseline: bare python -c pass: median {statistics.median(baseline) * 1000:.0f} ms")
    text = deep_spec(200)
    spec = parse(text)
    for _ in range(3):  # warm
        plan(spec)
    runs = []
    for _ in range(50):
        start = time.perf_counter()
        result = plan(parse(text))
        runs.append(time.perf_counter() - start)
    print(
        f"parse + plan of a {len(result.layers)}-layer spec: median {statistics.median(runs) * 1000:.2f} ms, max {max(runs) * 1000:.2f} ms"
    )
    start = time.perf_counter()
    render_plan(result)
    print(
        f"render of the {len(result.layers)}-layer table: {(time.perf_counter() - start) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
