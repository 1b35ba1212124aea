"""Read bench/quiet_all.sh's logs and print the goal rows as a Markdown table for BENCHMARKS.md.

    .venv/bin/python bench/quiet_summary.py [LOG_DIR]      (default $LOG_DIR, else /tmp/bench-logs)

Each row is parsed from the lines its benchmark prints (the formats are those of bench/*.py as of
this commit). A missing log gives "not run"; a log whose figure line is absent (a failed or
timed-out run) gives "no figure, see LOG". "met?" is yes/no against the issue's threshold, or
"record" where the issue asks only for the figure.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

Row = tuple[str, str, str]


class Logs:
    """The logs of one quiet run, read lazily by benchmark name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def text(self, name: str) -> str | None:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else None

    def find(self, name: str, pattern: str) -> re.Match[str] | None:
        text = self.text(name)
        return re.search(pattern, text, re.MULTILINE) if text else None

    def findall(self, name: str, pattern: str) -> list:
        text = self.text(name)
        return re.findall(pattern, text, re.MULTILINE) if text else []

    def missing(self, name: str) -> str:
        return "not run" if self.text(name) is None else f"no figure, see {name}.log"


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def num(text: str) -> float:
    return float(text.replace(",", ""))


def mnist(logs: Logs) -> list[Row]:
    goal = "bare command to 99.0% MNIST test in ≤ 15 s of training, 3 seeds (#4, #10)"
    seeds = logs.findall("mnist_cpu", r"^\| default seed \d+ \| ([\d.]+) s")
    if seeds:
        rows = [(goal, " / ".join(f"{s} s" for s in seeds), yes(max(map(float, seeds)) <= 15))]
    else:
        rows = [(goal, logs.missing("mnist_cpu"), "?")]
    m = logs.find("mnist_cpu", r"^baseline to 99% needs >= 3 epochs \(~(\d+) s.*?: (\d+)x")
    goal = "≥ 25× less time to 99% than PyTorch's MNIST example (#4)"
    if m:
        rows.append(
            (goal, f"{m[2]}× (worst seed; 3 baseline epochs ≈ {m[1]} s)", yes(int(m[2]) >= 25))
        )
    else:
        rows.append((goal, logs.missing("mnist_cpu"), "?"))
    m = logs.find("mnist_cpu", r"^cnnkit peak RSS: (\d+) MiB")
    goal = "peak RSS < 1.5 GB while training (#4)"
    rows.append(
        (goal, f"{m[1]} MiB", yes(int(m[1]) < 1536))
        if m
        else (goal, logs.missing("mnist_cpu"), "?")
    )
    return rows


def photo(logs: Logs) -> list[Row]:
    goal = "photo folder: bare within 3 points of hand-tuned, ≤ 90 s of training (#10)"
    gap = logs.find("photo_folder", r"^bare is (-?[\d.]+) points below tuned")
    bare = logs.find("photo_folder", r"^bare\s+.*?test acc ([\d.]+)%\s+([\d.]+) s of training")
    tuned = logs.find("photo_folder", r"^tuned\s+.*?test acc ([\d.]+)%")
    if not (gap and bare and tuned):
        return [(goal, logs.missing("photo_folder"), "?")]
    measured = f"bare {bare[1]}% in {bare[2]} s, tuned {tuned[1]}%: {gap[1]} points"
    return [(goal, measured, yes(float(gap[1]) <= 3 and float(bare[2]) <= 90))]


def fashion(logs: Logs) -> list[Row]:
    goal = "Fashion-MNIST: bare command ≥ 92.5% test in ≤ 3 min (#10)"
    m = logs.find("fashion_cpu", r"test acc ([\d.]+)% \(best ([\d.]+)%\), ([\d.]+) s of training")
    if not m:
        return [(goal, logs.missing("fashion_cpu"), "?")]
    measured = f"{m[1]}% (best {m[2]}%) in {m[3]} s"
    return [(goal, measured, yes(float(m[1]) >= 92.5 and float(m[3]) <= 180))]


def onnx(logs: Logs) -> list[Row]:
    rows: list[Row] = []
    for name, ratio in logs.findall("onnx_bench", r"^(\w+): .*speed-up over torch eager x([\d.]+)"):
        goal = f"ONNX Runtime at least as fast as torch eager at batch 1, {name} (#12)"
        line = logs.find("onnx_bench", rf"^{name}: (.*);")
        rows.append((goal, f"×{ratio} ({line[1] if line else ''})", yes(float(ratio) >= 1)))
    if not rows:
        rows.append(("ONNX Runtime vs torch eager, batch 1 (#12)", logs.missing("onnx_bench"), "?"))
    m = logs.find(
        "onnx_bench", r"^start-up to the first prediction.*: ONNX ([\d.]+) s, torch ([\d.]+) s"
    )
    if m:
        rows.append(
            (
                "start-up to the first prediction, ONNX vs torch (#12)",
                f"{m[1]} s vs {m[2]} s",
                "record",
            )
        )
    sizes = logs.findall("onnx_bench", r"^install size, (.*?): (\d+) MiB")
    if sizes:
        rows.append(("install size (#12)", "; ".join(f"{k} {v} MiB" for k, v in sizes), "record"))
    return rows


def serve(logs: Logs) -> list[Row]:
    table = {
        (name, int(conc)): (int(errors), float(p50), float(p99), float(rate))
        for name, conc, _, errors, p50, p99, rate in logs.findall(
            "serve_load",
            r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|",
        )
    }
    if ("run", 1) not in table or ("run", 16) not in table:
        return [
            (
                "serve: LeNet predict p50 ≤ 5 ms at concurrency 1 (#6)",
                logs.missing("serve_load"),
                "?",
            )
        ]
    rows = [
        (
            "serve: LeNet predict p50 ≤ 5 ms at concurrency 1 (#6)",
            f"{table['run', 1][1]} ms",
            yes(table["run", 1][1] <= 5),
        ),
        (
            "serve: ≥ 800 requests/s at concurrency 16 (#6)",
            f"{table['run', 16][3]:.0f} requests/s",
            yes(table["run", 16][3] >= 800),
        ),
    ]
    growth = [
        float(g)
        for _, g in logs.findall("serve_load", r"^server RSS \((\w+):.*\(([+-][\d.]+) MB\)")
    ]
    errors = sum(v[0] for v in table.values())
    rows.append(
        (
            "serve: no errors, RSS growth < 50 MB (#6)",
            f"{errors} errors, RSS " + ", ".join(f"{g:+.1f}" for g in growth) + " MB",
            yes(errors == 0 and all(g < 50 for g in growth)),
        )
    )
    if ("onnx", 16) in table:
        ratio = table["onnx", 16][3] / table["run", 16][3]
        measured = f"{table['onnx', 16][3]:.0f} vs {table['run', 16][3]:.0f} requests/s (×{ratio:.2f}); c1 p50 {table['onnx', 1][1]} vs {table['run', 1][1]} ms"
        rows.append(
            ("`serve model.onnx` vs `serve RUN` at concurrency 16 (#12)", measured, "record")
        )
    return rows


def abuse(logs: Logs) -> list[Row]:
    rss = logs.find("abuse", r"server RSS: idle (\d+) MB, peak \(VmHWM\) (\d+) MB")
    if not rss:
        return [("abuse: server RSS < 1 GB throughout (#11)", logs.missing("abuse"), "?")]
    rows = [
        (
            "abuse: server RSS < 1 GB throughout (#11)",
            f"peak {rss[2]} MB (idle {rss[1]} MB)",
            yes(int(rss[2]) < 1024),
        )
    ]
    held = logs.find("abuse", r"^  held connections: (\{.*\})$")
    if held:
        figures = ast.literal_eval(held[1])
        rows.append(
            (
                "/healthz p99 ≤ 100 ms with 500 slow connections held (#11)",
                f"p99 {figures['healthz_p99_ms']} ms (p50 {figures['healthz_p50_ms']}, {figures['held']} held)",
                yes(figures["healthz_p99_ms"] <= 100),
            )
        )
    small = logs.find("abuse", r"^  small predict during a maximal decode: (\{.*\})$")
    if small:
        figures = ast.literal_eval(small[1])
        p50, top = figures["small_p50_ms"], figures["small_max_ms"]
        rows.append(
            (
                "small predict ≤ 50 ms while a maximal image decodes (#11)",
                f"p50 {p50} ms, max {top} ms over {figures['small_requests']} requests",
                yes(p50 is not None and p50 <= 50)
                + ("" if top is None or top <= 50 else " (p50; max over)"),
            )
        )
    errors = logs.find("abuse", r"5xx or failed: (\d+)")
    tracebacks = logs.find("abuse", r"server log: \d+ lines, (\d+) tracebacks")
    if errors:
        rows.append(
            (
                "0 responses with status 5xx (#11)",
                f"{errors[1]} (server tracebacks: {tracebacks[1] if tracebacks else '?'})",
                yes(errors[1] == "0"),
            )
        )
    return rows


def fuzz(logs: Logs) -> list[Row]:
    goal = "0 tracebacks in 10 minutes of CLI fuzzing (#11)"
    lines = logs.findall("fuzz_cli", r"^(\{.*\"tracebacks\".*\})$")
    if not lines:
        return [(goal, logs.missing("fuzz_cli"), "?")]
    c = json.loads(lines[-1])
    measured = f"{c['tracebacks']} tracebacks, {c['bad_exit']} bad exits in {c['cases']:,} cases ({c['minutes']} min, {c['timeouts']} timeouts)"
    return [
        (goal, measured, yes(c["tracebacks"] == 0 and c["bad_exit"] == 0 and c["minutes"] >= 10))
    ]


def live(logs: Logs) -> list[Row]:
    goal = "time to 99% MNIST grows ≤ 5% with live snapshots (#15)"
    m = logs.find("live_overhead", r"time to target grows by ([+-][\d.]+)% with snapshots")
    f = logs.find("live_overhead", r"snapshot fraction of training time: max ([\d.]+)%")
    if not m:
        return [(goal, logs.missing("live_overhead"), "?")]
    measured = f"{m[1]}%" + (f" (snapshots ≤ {f[1]}% of training time)" if f else "")
    return [(goal, measured, yes(float(m[1]) <= 5))]


def data_memory(logs: Logs) -> list[Row]:
    rows: list[Row] = []
    for shape, ram, cold, warm in logs.findall(
        "data_memory",
        r"^\s*(\S+) x [\d,]+ .*?RAM ([\d,]+) images/s, disk cold ([\d,]+), disk warm ([\d,]+)",
    ):
        rows.append(
            (
                f"images/s from RAM vs disk, {shape} (#14)",
                f"RAM {ram}, disk cold {cold}, warm {warm}",
                "record",
            )
        )
    m = logs.find(
        "data_memory",
        r"^decode ([\d,]+) PNGs into the cache: peak RSS ([\d,]+) MB, ([\d,]+) MB above",
    )
    if m:
        rows.append(
            (
                f"peak RSS decoding {m[1]} PNGs into the cache (#14)",
                f"{m[2]} MB ({m[3]} MB above the imports)",
                "record",
            )
        )
    return rows or [("data beyond RAM: images/s, peak RSS (#14)", logs.missing("data_memory"), "?")]


def ddp(logs: Logs) -> list[Row]:
    goal = "2 processes × 1 thread vs 1 × 2 threads, full MNIST (#14)"
    m = logs.find(
        "ddp_cpu",
        r"1 process x 2 threads ([\d,]+) images/s, 2 processes x 1 thread ([\d,]+) images/s; efficiency (\d+)%",
    )
    if not m:
        return [(goal, logs.missing("ddp_cpu"), "?")]
    return [(goal, f"{m[1]} vs {m[2]} images/s: {m[3]}% (all-reduce: see ddp_cpu.log)", "record")]


def older(logs: Logs) -> list[Row]:
    rows: list[Row] = []

    def add(goal: str, name: str, pattern: str, show: Callable, ok: Callable) -> None:
        m = logs.find(name, pattern)
        rows.append((goal, show(m), yes(ok(m))) if m else (goal, logs.missing(name), "?"))

    add(
        "`cnnkit plan lenet5`, whole process ≤ 0.25 s (#2)",
        "plan_speed",
        r"median (\d+) ms, max (\d+) ms",
        lambda m: f"median {m[1]} ms, max {m[2]} ms",
        lambda m: int(m[1]) <= 250,
    )
    add(
        "200-layer plan ≤ 50 ms (#2)",
        "plan_speed",
        r"200-layer spec: median ([\d.]+) ms",
        lambda m: f"{m[1]} ms",
        lambda m: float(m[1]) <= 50,
    )
    add(
        "full MNIST into the loader ≤ 1.5 s (#3)",
        "data_load",
        r"DeviceLoader: median ([\d.]+) s",
        lambda m: f"{m[1]} s",
        lambda m: float(m[1]) <= 1.5,
    )
    add(
        "peak RSS < 400 MB loading MNIST (#3)",
        "data_load",
        r"^peak RSS (\d+) MB",
        lambda m: f"{m[1]} MB",
        lambda m: int(m[1]) < 400,
    )
    add(
        "device batches ≥ 20× a per-sample DataLoader (#3)",
        "data_batches",
        r"DeviceLoader is (\d+)x faster",
        lambda m: f"{m[1]}×",
        lambda m: int(m[1]) >= 20,
    )
    add(
        "batch production < 5% of a CPU training step (#3)",
        "data_batches",
        r"batch production is ([\d.]+)%",
        lambda m: f"{m[1]}%",
        lambda m: float(m[1]) < 5,
    )
    add(
        "10,000 PNGs: ≥ 1,500 images/s first load (#3)",
        "data_folder",
        r"^first load:\s+([\d,]+) images/s",
        lambda m: f"{m[1]} images/s",
        lambda m: num(m[1]) >= 1500,
    )
    add(
        "10,000 PNGs: ≥ 100,000 images/s from cache (#3)",
        "data_folder",
        r"^from cache:\s+([\d,]+) images/s",
        lambda m: f"{m[1]} images/s",
        lambda m: num(m[1]) >= 100_000,
    )
    add(
        "all inspect views of one image ≤ 3 s (#5)",
        "inspect_speed",
        r"all single-image views .*: ([\d.]+) s",
        lambda m: f"{m[1]} s",
        lambda m: float(m[1]) <= 3,
    )
    add(
        "top patches over 10,000 images ≤ 30 s (#5)",
        "inspect_speed",
        r"^top patches over ([\d,]+) .*: ([\d.]+) s",
        lambda m: f"{m[2]} s ({m[1]} images)",
        lambda m: float(m[2]) <= 30,
    )
    add(
        "`cnnkit report` on a LeNet run ≤ 60 s (#5)",
        "inspect_speed",
        r"^cnnkit report on .*: ([\d.]+) s",
        lambda m: f"{m[1]} s",
        lambda m: float(m[1]) <= 60,
    )
    lines = logs.findall("finetune", r"^(\S.*?)\s{2,}(0\.\d{4})\s+(\S+)\s+([\d.]+)$")
    if lines:
        rows.append(
            (
                "fine-tuning vs scratch, Fashion-MNIST few-shot (#10)",
                "; ".join(f"{n.strip()} {a}" for n, a, _, _ in lines),
                "record",
            )
        )
    lines = logs.findall("threads_busy", r"^threads\s+(\S+) \((\d+)\):\s+([\d,]+) images/s")
    if lines:
        rows.append(
            (
                "training images/s on a busy CPU by --threads (#10)",
                "; ".join(f"{t} ({c}): {r}" for t, c, r in lines),
                "record",
            )
        )
    return rows


SECTIONS = (mnist, photo, fashion, onnx, serve, abuse, fuzz, live, data_memory, ddp, older)


def main() -> int:
    folder = Path(
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LOG_DIR", "/tmp/bench-logs")
    )
    logs = Logs(folder)
    machine = logs.text("machine")
    if machine:
        print("\n".join(f"<!-- {line} -->" for line in machine.strip().splitlines()))
    print("| goal (issue) | measured | met? |\n| --- | --- | --- |")
    for section in SECTIONS:
        try:
            rows = section(logs)
        except (KeyError, ValueError, SyntaxError, TypeError, IndexError) as error:
            rows = [(section.__name__, f"could not parse its log: {error!r}", "?")]
        for goal, measured, met in rows:
            print(f"| {goal} | {measured} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
