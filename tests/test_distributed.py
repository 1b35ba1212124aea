"""Data-parallel training (issue 14): 2 CPU ranks over gloo against 1 process, exact resume after
SIGKILL, a dead rank stopping the other, and the bad inputs, each one line and exit 2.

The slow tests start real ranks (`cnnkit train --nproc 2`, or two processes given torchrun's
environment by hand) on mnist-mini with one thread per rank.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnkit import distributed
from cnnkit.cli import main
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.train import resume

SRC = str(Path(__file__).resolve().parents[1] / "src")
# 39 steps of 256 on mnist-mini's 10,000 training digits; validated on its 2,000 test digits.
QUICK = ["--data", "mnist-mini", "--epochs", "1", "--batch-size", "256", "--val", "test"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **extra}


def _cnnkit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnkit", "train", *args],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _manifest(run: Path) -> dict:
    return json.loads((run / "cnnkit.json").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- pure parts


def test_loss_weight_makes_the_global_mean():
    # ranks' shard means m_r weighted by n_r*W/B, then averaged over W ranks (DDP): sum n_r m_r / B
    world = distributed.World(rank=0, size=3, backend="gloo")
    shards = [4, 3, 3]
    assert sum(distributed.loss_weight(world, n, 10) for n in shards) / 3 == pytest.approx(1.0)
    assert distributed.loss_weight(distributed.World(), 64, 64) == 1.0  # exact for one process
    assert distributed.loss_weight(distributed.World(size=2, backend="gloo"), 32, 64) == 1.0


def test_config_digest_differs_with_options_and_is_stable():
    one = distributed.config_digest({"lr": 0.2, "seed": 0})
    assert one == distributed.config_digest({"seed": 0, "lr": 0.2})
    assert one != distributed.config_digest({"lr": 0.3, "seed": 0})


def test_outside_torchrun_there_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with distributed.joined("cpu") as world:
        assert world == distributed.World() and world.main and not world.joined
    assert distributed.all_sum(world, [1.0, 2.0]) == [1.0, 2.0]


@pytest.mark.parametrize(
    ("argv", "cores", "message"),
    [
        (["--nproc", "0"], 2, r"--nproc must be a whole number >= 1 \(processes\), got 0"),
        (["--nproc", "3"], 2, r"--nproc 3 is more than the 2 CPU cores here; use --nproc 2"),
        (["--nproc", "2", "--device", "cuda"], 2, r"--device cuda with 2 ranks .* needs 2 GPUs"),
        (["--nproc", "2", "--sync-bn", "--device", "cpu"], 2, r"--sync-bn runs on GPUs only"),
    ],
)
def test_bad_nproc_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, argv, cores, message):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    with pytest.raises(ConfigError, match=message):
        cores_device = "cuda" if "cuda" in argv else "cpu"
        distributed.check_nproc(int(argv[1]), cores_device, "--sync-bn" in argv)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 2 ranks


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def two_ranks(runs_dir) -> Path:
    run = runs_dir / "two"
    done = _cnnkit(*QUICK, "--out", str(run), "--nproc", "2", "--checkpoint-every", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("finished after ") == 1  # progress printed once (rank 0)
    return run


@pytest.mark.slow
def test_two_ranks_write_one_run_with_one_model(two_ranks):
    manifest = _manifest(two_ranks)
    ddp = manifest["distributed"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert len(set(ddp["weights_sha256"])) == 1  # both ranks ended with the same weights
    # live/: the CLI's snapshots for the explorer, written by rank 0 like everything else.
    assert sorted(p.name for p in two_ranks.iterdir()) == [
        "cnnkit.json",
        "live",
        "metrics.jsonl",
        "model.safetensors",
        "state",
    ]


@pytest.mark.slow
def test_two_ranks_reach_the_accuracy_of_one(two_ranks, runs_dir):
    run = runs_dir / "one"
    done = _cnnkit(*QUICK, "--out", str(run), "--checkpoint-every", "5")
    assert done.returncode == 0, done.stderr
    one = _manifest(run)["metrics"]["final_val_acc"]
    two = _manifest(two_ranks)["metrics"]["final_val_acc"]
    # The same batches and weights at the start; batch norm sees each rank's 128 images rather
    # than the 256, so the runs part slowly.
    assert abs(one - two) <= 0.005, (one, two)
    assert _manifest(run)["metrics"]["val_images"] == _manifest(two_ranks)["metrics"]["val_images"]


@pytest.mark.slow
def test_resuming_with_another_world_size_is_refused(two_ranks, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        CheckpointError,
        match=r"was trained by 2 rank\(s\), this resume runs 1; resume it with --nproc 2",
    ):
        resume(two_ranks)


def _children(pid: int) -> list[int]:
    """The ranks the launcher spawned (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


def _step(run: Path) -> int:
    try:
        return json.loads((run / "state" / "state.json").read_text()).get("step", 0)
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_sigkill_of_a_rank_then_resume_gives_the_uninterrupted_weights(two_ranks, runs_dir):
    run = runs_dir / "killed"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "train", *QUICK, "--out", str(run), "--nproc", "2",
         "--checkpoint-every", "5", "--quiet"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while _step(run) < 10 and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    ranks = _children(launcher.pid)
    assert len(ranks) == 2 and _step(run) < 39
    os.kill(ranks[-1], signal.SIGKILL)  # any rank, at any step
    killed = time.monotonic()
    _, err = launcher.communicate(timeout=120)
    # A dead rank stops the other within a bounded time, and the launcher names it in one line.
    assert time.monotonic() - killed < 60
    assert launcher.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert (
        len(lines) == 1 and "failed (killed by SIGKILL); the other ranks were stopped" in lines[0]
    )
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)  # no orphan
    assert not list(run.glob(".*.tmp")) and not list((run / "state").glob(".*.tmp"))

    done = _cnnkit("--resume", str(run), "--quiet")  # takes the run's world size, 2
    assert done.returncode == 0, done.stderr
    resumed, uninterrupted = _weights(run), _weights(two_ranks)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


# ----------------------------------------------------------------------------- by hand (torchrun's env)


def _rank_env(rank: int, port: int, **extra: str) -> dict[str, str]:
    return _env(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra,
    )  # fmt: skip


@pytest.mark.slow
def test_a_rendezvous_that_never_completes_is_one_line(tmp_path):
    env = _rank_env(0, _free_port(), CNNKIT_DIST_TIMEOUT="3")
    done = _cnnkit(*QUICK, "--out", str(tmp_path / "run"), env=env, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "rank 0 of 2: the rendezvous at 127.0.0.1:" in done.stderr
    assert "did not complete within 3 s" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ranks_with_other_options_are_refused_by_rank_zero(tmp_path):
    port, out = _free_port(), str(tmp_path / "run")
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "cnnkit", "train", *QUICK, "--out", out, "--lr", lr],
            env=_rank_env(rank, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank, lr in ((0, "0.2"), (1, "0.3"))
    ]
    (_, err0), (_, err1) = (rank.communicate(timeout=180) for rank in ranks)
    assert ranks[0].returncode == 2 and err0.count("\n") == 1, err0
    assert "rank 1 runs other code or options than rank 0" in err0
    assert ranks[1].returncode == distributed.PEER_EXIT and err1 == ""
    assert not Path(out).exists()


@pytest.mark.slow
def test_fit_from_python_inside_torchrun_workers(tmp_path):
    script = tmp_path / "worker.py"
    out = tmp_path / "run"
    script.write_text(
        "import os\n"
        "from cnnkit.train import TrainConfig, fit\n"
        f"config = TrainConfig(data='mnist-mini', epochs=1, batch_size=512, val='test', out={str(out)!r})\n"
        "result = fit(config)\n"
        # one write per rank, under PIPE_BUF, so the ranks' lines cannot interleave
        "dist = result.manifest['distributed']\n"
        'line = f\'{os.environ["RANK"]} {result.final_val_acc} {dist["world_size"]}\\n\'\n'
        "os.write(1, line.encode())\n"
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*torchrun, str(script)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = sorted(line.split() for line in done.stdout.strip().splitlines())
    assert [row[0] for row in rows] == ["0", "1"] and rows[0][1:] == rows[1][1:], rows
    assert rows[0][2] == "2" and (out / "model.safetensors").is_file()
