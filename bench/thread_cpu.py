"""CPU seconds of each thread of a process, from /proc (Linux): how a server's CPU splits
between its decode workers and everything else (gRPC, protobuf, tokenization, metrics)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
DECODE_THREAD = "nmt-decode-"  # server/batcher.py names its decode workers so


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """thread id -> (its name, user + system CPU seconds so far); empty where there is no /proc."""
    threads: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return threads
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(tid)] = (stat[stat.index("(") + 1 : stat.rindex(")")], (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND)
    return threads


def thread_cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[int, tuple[str, float]]:
    """thread id -> (its name, CPU seconds it spent between two readings); threads started
    in between count from zero."""
    return {tid: (name, seconds - before.get(tid, (name, 0.0))[1]) for tid, (name, seconds) in after.items()}


def seconds_outside_decode_workers(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> float | None:
    """CPU seconds the threads other than the decode workers spent between two readings; None
    without readings."""
    if not after:
        return None
    return sum(seconds for name, seconds in thread_cpu_spent(before, after).values() if not name.startswith(DECODE_THREAD))
