"""How many CPU threads to use: the one home of that rule for train, evaluate, predict, serve.

    default_threads()        # the cores the machine's load leaves free (or OMP_NUM_THREADS)

Standard library only, so the torch-free ONNX path of `cnnkit predict` sizes ONNX Runtime's
threads with the same rule; `cnnkit.devices.use_threads` applies it to torch.

Why not all cores: on a busy machine, torch's default (one thread per core) oversubscribes it.
Measured with bench/threads_busy.py on the 2-core dev machine, already loaded by other jobs
(load average 13) plus one spinning process: the digits preset on mnist-mini trained at 142
images/s with 1 thread, 16 images/s with 2 (torch's default), 163 with this default (1).

Why not the load average: it lags by a minute and counts this process's own earlier work. On the
quiet machine, bench/mnist_cpu.py's second seed saw a load of ~2 from its first and trained on 1
thread: 99% MNIST in 27 s instead of 12 s. The runnable count of /proc/loadavg is instantaneous.
"""

from __future__ import annotations

import os
import time

from cnnkit.errors import ConfigError


def cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """OMP_NUM_THREADS when set, else min(cores, max(1, cores - other runnable processes)).

    Other runnable processes: the kernel's count of runnable threads now, less this one, as the
    median of a few samples (`others_running`); it is what the others use, the rest is free.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isascii() and env.isdigit() and int(env) >= 1:
        return int(env)
    count = cores()
    busy = others_running()
    if busy is None:
        return count
    return min(count, max(1, count - busy))


def others_running(samples: int = 5, interval: float = 0.01) -> int | None:
    """Threads runnable now on the machine besides this one (median of `samples` readings of
    /proc/loadavg's running count); None where the OS has no /proc (then all cores are used)."""
    readings = []
    for index in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as file:
                running = file.read().split()[3].split("/")[0]
        except (OSError, IndexError):
            return None
        readings.append(max(0, int(running) - 1))  # the reader itself is running
        if index + 1 < samples:
            time.sleep(interval)
    return sorted(readings)[len(readings) // 2]


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
