"""Past one device: data-parallel training over torch.distributed, started by torchrun or --nproc.

    torchrun --nproc-per-node 2 -m cnnkit train --data mnist      # torch's launcher
    cnnkit train --data mnist --nproc 2                            # the same workers, in-process

Every rank runs the same `cnnkit.train.fit`: it joins the process group torchrun's environment
describes (gloo on CPUs, NCCL on GPUs), checks that every rank runs the same code and options,
trains its shard of each global batch under DistributedDataParallel, and only rank 0 writes the
run directory. Nothing here is global: `World` is read from the environment, and a process group
that fit() opened is closed when fit() returns.

Learning rate: `--batch-size` is the global batch, so the step a world of N ranks takes is the
step one process takes on the same batch (up to float summation order): no scaling rule applies,
and a recipe tuned on one device keeps its learning rate on N.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cnnkit.errors import ConfigError

# Seconds a collective waits for a rank that stopped answering (a dead rank is seen at once:
# its sockets close). CNNKIT_DIST_TIMEOUT changes it, e.g. for a slow rendezvous.
TIMEOUT_S = 60.0
SETUP_TIMEOUT_S = 1800.0  # ranks > 0 wait this long for rank 0 to decode and cache the data
PEER_EXIT = 75  # the exit code of a rank that stopped because another one did


class PeerFailed(Exception):
    """Another rank stopped; this one stops too without a message (the launcher names it)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; World() is one process, no process group."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank on this machine: its GPU index
    local_size: int = 1  # ranks on this machine
    backend: str | None = None  # gloo | nccl once joined; None for one process

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run directory and prints."""
        return self.rank == 0

    @property
    def joined(self) -> bool:
        return self.backend is not None

    def describe(self) -> dict[str, Any]:
        """What the manifest records."""
        return {"world_size": self.size, "backend": self.backend or "none"}


def env_world() -> World:
    """The world torchrun's environment describes (RANK, WORLD_SIZE, ...), or one process."""
    env = os.environ
    if not all(name in env for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return World()
    return World(
        rank=int(env["RANK"]),
        size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
        local_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
    )


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get("CNNKIT_DIST_TIMEOUT", TIMEOUT_S)))


@contextlib.contextmanager
def joined(device: str) -> Iterator[World]:
    """Join the process group of torchrun's environment for training on `device` (a
    TrainConfig.device), and leave it afterwards; outside torchrun, yield World()."""
    world = env_world()
    if world.size == 1 and "RANK" not in os.environ:
        yield world
        return
    if dist.is_initialized():  # the caller's own group: use it, and leave it open
        yield _with_backend(world, dist.get_backend())
        return
    backend = "nccl" if _wants_cuda(device) else "gloo"
    if backend == "nccl":
        check_gpus(world.local_size)
        torch.cuda.set_device(world.local_rank)
    _init(world, backend)
    try:
        yield _with_backend(world, backend)
    finally:
        dist.destroy_process_group()


def _with_backend(world: World, backend: str) -> World:
    return World(world.rank, world.size, world.local_rank, world.local_size, backend)


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def check_gpus(ranks: int) -> None:
    """Refuse more ranks on this machine than it has GPUs (two ranks on one GPU hang NCCL)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if ranks > count:
        raise ConfigError(
            f"--device cuda with {ranks} ranks on this machine needs {ranks} GPUs, but it has "
            f"{count}; use --nproc {max(count, 1)} (torchrun --nproc-per-node) or --device cpu"
        )


def _init(world: World, backend: str) -> None:
    """init_process_group from the environment; a rendezvous that never completes is one line."""
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=_timeout())
    except (RuntimeError, ValueError) as error:  # DistStoreError/DistNetworkError subclass these
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        reason = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error)
        raise ConfigError(
            f"rank {world.rank} of {world.size}: the rendezvous at {where} did not complete within "
            f"{_timeout().total_seconds():g} s ({reason}); start every rank with the same "
            f"MASTER_ADDR/MASTER_PORT (torchrun --rdzv-endpoint), or raise CNNKIT_DIST_TIMEOUT"
        ) from error


# ----------------------------------------------------------------------------- same run everywhere


def code_digest() -> str:
    """A digest of cnnkit's own source files: ranks running different code differ here."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def config_digest(config: dict[str, Any]) -> str:
    """A digest of the options a rank trains with and of its code."""
    text = json.dumps(config, sort_keys=True, default=str) + code_digest() + torch.__version__
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_same(world: World, config: dict[str, Any]) -> None:
    """Refuse to train when the ranks' code or options differ (compared by digest)."""
    if not world.joined:
        return
    mine = config_digest(config)
    digests: list[Any] = [None] * world.size
    dist.all_gather_object(digests, mine)
    odd = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
    if odd and not world.main:  # rank 0 says it, once
        raise PeerFailed(f"rank {world.rank}: the ranks' options differ")
    if odd:
        raise ConfigError(
            f"rank {odd[0]} runs other code or options than rank 0 (config digest {digests[odd[0]]}"
            f" != {digests[0]}); start every rank from the same cnnkit and the same command line"
        )


@contextlib.contextmanager
def rank_zero_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (it creates the run directory and fills the data cache),
    then the others, which read that cache instead of decoding the data again."""
    if world.joined and not world.main:
        _wait_for_rank_zero(world)
    yield
    if world.joined and world.main:
        _wait_for_rank_zero(world)


def _wait_for_rank_zero(world: World) -> None:
    try:
        if world.backend == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=SETUP_TIMEOUT_S))
        else:
            dist.barrier()
    except RuntimeError as error:
        raise PeerFailed(f"rank {world.rank}: another rank stopped during set-up") from error


# ----------------------------------------------------------------------------- collectives


def wrap(model: nn.Module, world: World, device: torch.device, sync_bn: bool) -> nn.Module:
    """`model` under DistributedDataParallel (batch norm synchronised with `sync_bn`)."""
    if not world.joined:
        return model
    if sync_bn and device.type != "cuda":
        raise ConfigError(
            f"--sync-bn runs on GPUs only (torch's SyncBatchNorm), not on {device}; drop --sync-bn"
        )
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index or 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def loss_weight(world: World, shard: int, batch: int) -> float:
    """The factor on a rank's mean loss that makes DDP's average of the ranks' gradients the
    gradient of the global batch's mean loss: mean over the shard * shard/batch * world size.
    It is exactly 1.0 when the world size divides the batch."""
    return shard * world.size / batch


def all_sum(world: World, values: Sequence[float]) -> list[float]:
    """The sums of `values` over the ranks (float64 on the host, so counts stay exact)."""
    if not world.joined:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if world.backend == "nccl":
        tensor = tensor.cuda()
    _collective(world, dist.all_reduce, tensor)
    return tensor.tolist()


def sum_to_rank_zero(world: World, values: Sequence[float]) -> list[float]:
    """The sums over the ranks on rank 0, zeros on the others: sums that rank 0 saves and a
    resume gives to every rank still add up to the totals."""
    if not world.joined:
        return list(values)
    totals = all_sum(world, values)
    return totals if world.main else [0.0] * len(totals)


def sync_buffers(world: World, model: nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics), as DDP does before
    each training forward: before validating and saving, so all ranks hold what is saved."""
    if not world.joined:
        return
    for buffer in model.buffers():
        _collective(world, dist.broadcast, buffer, 0)


def summary(world: World, model: nn.Module) -> dict[str, Any]:
    """What the manifest records: world size, backend, and each rank's weight digest."""
    if not world.joined:
        return world.describe()
    return {**world.describe(), "weights_sha256": weight_digests(world, model)}


def weight_digests(world: World, model: nn.Module) -> list[str]:
    """Every rank's digest of its parameters and buffers, gathered on every rank."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    if not world.joined:
        return [digest.hexdigest()[:16]]
    digests: list[Any] = [None] * world.size
    _collective(world, dist.all_gather_object, digests, digest.hexdigest()[:16])
    return digests


def _collective(world: World, operation: Any, *args: Any) -> None:
    try:
        operation(*args)
    except RuntimeError as error:  # a peer died: gloo sees its sockets close
        raise PeerFailed(f"rank {world.rank}: another rank stopped") from error


# ----------------------------------------------------------------------------- --nproc


def check_nproc(nproc: int, device: str, sync_bn: bool = False) -> None:
    """Refuse --nproc 0, more CPU ranks than cores, more CUDA ranks than GPUs."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc must be a whole number >= 1 (processes), got {nproc!r}")
    if _wants_cuda(device):
        check_gpus(nproc)
        return
    if sync_bn:
        raise ConfigError(
            f"--sync-bn runs on GPUs only (torch's SyncBatchNorm), not with --device {device}; "
            f"drop --sync-bn"
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if nproc > (cores or 1):
        # Refused, not warned: a rank per core already runs one thread each; more ranks than
        # cores time-share them and every all-reduce waits for the slowest.
        raise ConfigError(
            f"--nproc {nproc} is more than the {cores} CPU cores here; use --nproc {cores} or "
            f"fewer (each rank trains on one core)"
        )


def launch(nproc: int, worker: Any, args: tuple[Any, ...]) -> tuple[int, str | None]:
    """Run `worker(*args)` in `nproc` ranks on this machine through torch's elastic launcher
    (what torchrun runs); (exit code, the one line naming the failed rank, or None)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torchrun's default too: one thread per rank, so ranks do not oversubscribe the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The agent's own log lines (stopping the other ranks, the failure's traceback) would bury
    # the one line below.
    for name in ("torch.distributed.elastic", "torch.multiprocessing"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"cnnkit-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # torchrun --standalone: a free port on this machine
        max_restarts=0,
        monitor_interval=0.1,  # the agent stops the other ranks within ~0.1 s of a failure
        start_method="spawn",
    )
    try:
        elastic_launch(config, worker)(*args)
    except ChildFailedError as error:
        failures = sorted(error.failures.items(), key=lambda item: item[1].timestamp)
        if any(failure.exitcode == 2 for _, failure in failures):
            return 2, None  # a user error: the rank printed its own line
        # The cause, not the ranks stopped because of it (by the agent's SIGTERM, or themselves).
        stopped = (PEER_EXIT, -signal.SIGTERM)
        rank, failure = next(
            ((r, f) for r, f in failures if f.exitcode not in stopped), failures[0]
        )
        how = (
            f"killed by {failure.signal_name()}"
            if failure.exitcode < 0
            else f"exit code {failure.exitcode}"
        )
        return 1, f"rank {rank} failed ({how}); the other ranks were stopped"
    return 0, None


def any_rank(world: World, *flags: bool) -> list[bool]:
    """For each flag, whether it is set on any rank (so all ranks save and stop together)."""
    return [total > 0 for total in all_sum(world, [float(flag) for flag in flags])]


def wait(world: World) -> None:
    """A barrier: every rank waits here for the others (rank 0's writes are done after it)."""
    if world.joined:
        _collective(world, dist.barrier)
