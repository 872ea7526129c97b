"""Chunked work with its I/O overlapped: read the next chunk and write the previous result
while the current chunk is computed. The database drivers release the GIL while they wait."""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")


@dataclass
class StageSeconds:
    """Seconds spent in each stage; they overlap, so their sum exceeds the wall time."""

    read: float = 0.0
    compute: float = 0.0
    write: float = 0.0


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def run_overlapped(
    chunks: Iterator[Chunk],
    compute: Callable[[Chunk], Result],
    write: Callable[[Result], None],
) -> StageSeconds:
    """``write(compute(chunk))`` for every chunk, in order, one read and one write ahead."""
    seconds = StageSeconds()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="overlapped-io") as io:
        next_read: Future = io.submit(_timed, next, chunks, None)
        pending_write: Future | None = None
        while True:
            chunk, elapsed = next_read.result()
            seconds.read += elapsed
            if chunk is None:
                break
            next_read = io.submit(_timed, next, chunks, None)
            result, elapsed = _timed(compute, chunk)
            seconds.compute += elapsed
            if pending_write is not None:
                seconds.write += pending_write.result()[1]
            pending_write = io.submit(_timed, write, result)
        if pending_write is not None:
            seconds.write += pending_write.result()[1]
    return seconds
