"""Benchmark stages in fresh processes, and their peak resident memory."""

import multiprocessing
import queue as queues
import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` on Linux, which (unlike ``ru_maxrss``) does
    not carry over the parent's peak into a spawned child."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(function, args, queue) -> None:
    result = function(*args)
    result["peak_rss_mb"] = peak_rss_mb()
    queue.put(result)


def run_in_fresh_process(function, *args) -> dict:
    """``function(*args)`` (a module-level function returning a dict) in a spawned process,
    with the process's peak RSS added as ``peak_rss_mb``. Raises if the process ends without a
    result (its traceback is on stderr)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=1 if process.is_alive() else 5)
            break
        except queues.Empty:
            if not process.is_alive():
                raise RuntimeError(
                    f"{function.__name__} failed in its process (exit code {process.exitcode})"
                ) from None
    process.join()
    return result
