"""How many CPU threads to use: the one home of that rule for train, evaluate, predict, serve.

    default_threads()        # the cores the machine's load leaves free (or OMP_NUM_THREADS)

Standard library only, so the torch-free ONNX path of `cnnkit predict` sizes ONNX Runtime's
threads with the same rule; `cnnkit.devices.use_threads` applies it to torch.

Why not all cores: on a busy machine, torch's default (one thread per core) oversubscribes it.
Measured with bench/threads_busy.py on the 2-core dev machine, already loaded by other jobs
(load average 13) plus one spinning process: the digits preset on mnist-mini trained at 142
images/s with 1 thread, 16 images/s with 2 (torch's default), 163 with this default (1).
"""

from __future__ import annotations

import os

from cnnkit.errors import ConfigError


def cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """OMP_NUM_THREADS when set, else min(cores, max(1, cores - round(1-minute load average))).

    The load average counts the runnable processes of the whole machine; measured before this
    process starts working, it is what the others use, so the rest is free for us.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isascii() and env.isdigit() and int(env) >= 1:
        return int(env)
    count = cores()
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # Windows has no load average
        return count
    return min(count, max(1, count - round(load)))


def check_threads(threads: int | None) -> int | None:
    """`threads` when it is None or a whole number >= 1; ConfigError otherwise."""
    if threads is None:
        return None
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(
            f"--threads must be a whole number >= 1 such as 2, got {threads!r}; "
            f"leave it out to use the cores the machine's load leaves free"
        )
    return threads
