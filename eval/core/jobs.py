"""Jobs and the one scheduler that runs them; stage timing with one progress bar per stage.

A planner describes each long piece of work (a corpus, a training) as a `Job`: the folder it makes,
a picklable function and its arguments, its cost on the progress bar and the folders it needs
first. `Scheduler.run` skips what is complete and runs the rest in dependency rounds, `workers` at
a time; small models run faster as parallel single-thread processes than as one process over
several threads.

Threads per process (`threads_per_process`): a fixed number when the user gives one, else the
cores other programs leave free, split over the processes, decided afresh for each round of jobs.
Torch's threads wait for each other at every operation: on a core another program holds, the
others spin until the slow one is scheduled, so two threads beside one busy program run slower than
one thread (results/bench/training.md, contention). The thread count can change the last bits of the
numbers (not the conclusions); run.json records it, and a fixed `threads` repeats the bits.
"""
from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

from .store import StageLog

__all__ = ["Job", "Scheduler", "Stages", "exit_with_parent", "library_chatter", "is_dir", "threads_per_process",
           "torch_threads"]

BUSY_WINDOW_S = 0.25  # long enough to see a busy program, short beside any stage


def usable_cores() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(window: float = BUSY_WINDOW_S) -> float:
    """Cores other programs kept busy over the next `window` seconds (less this process's own CPU
    time: torch's threads may still spin after its last operation); 0 where /proc/stat is unreadable."""
    a, own, t0 = _cpu_jiffies(), cpu_seconds(), time.perf_counter()
    time.sleep(window)
    b, own, wall = _cpu_jiffies(), cpu_seconds() - own, time.perf_counter() - t0
    if a is None or b is None or b[1] <= a[1]:
        return 0.0
    return max(0.0, (os.cpu_count() or 1) * (b[0] - a[0]) / (b[1] - a[1]) - own / wall)


def threads_per_process(processes: int, threads: int = 0) -> int:
    """Torch threads for each of `processes` processes: `threads` when given (> 0), else the cores
    left free by other programs (at least one) split evenly, at least one each."""
    if threads > 0:
        return threads
    free = max(1, usable_cores() - round(busy_cores()))
    return max(1, free // max(1, processes))


@contextlib.contextmanager
def torch_threads(n: int):
    """This process on `n` torch threads for the block (then back to what it had)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def is_dir(target: Path) -> bool:
    return target.is_dir()


@dataclass(frozen=True)
class Job:
    """One unit of long work whose result is the folder `target`: `fn(args)` (module-level and
    picklable, so it can run in a worker process) makes it; `after` lists the folders it reads that
    other jobs make; `complete(target)` tells whether it is already done (parent process only)."""

    stage: str
    item: str
    target: Path
    fn: Callable[[Any], Any]
    args: Any = None
    cost: float = 1.0
    after: tuple[Path, ...] = ()
    complete: Callable[[Path], bool] = field(default=is_dir, compare=False)


@contextlib.contextmanager
def library_chatter(verbose: bool):
    """Without --verbose: no transformers progress bars ("Loading weights"), warnings or info lines,
    and no libraries' deprecation warnings (e.g. peft calling a renamed transformers method)."""
    if verbose:
        yield
        return
    from transformers.utils import logging as tlog

    level, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


def exit_with_parent(parent: int) -> None:
    """For a spawned child (a pool worker's initializer): exit when the parent is gone. A killed
    `antidistill run` would otherwise leave its workers finishing their jobs, holding their folders'
    locks, and the rerun that resumes it would find them taken."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _in_worker(fn: Callable[[Any], Any], args: Any, threads: int) -> float:
    """A job in a spawned worker with `threads` torch threads and no library chatter; seconds."""
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with library_chatter(False):
        fn(args)
    return time.perf_counter() - t0


class Scheduler:
    """Runs jobs: complete ones are logged as cached, the others in dependency rounds, `workers`
    at a time (one: in this process; more: spawned processes), each on `threads` torch threads (0:
    from the free cores, `threads_per_process`). Owns the worker pool and the thread split; logs
    each job in `log`."""

    def __init__(self, workers: int, log: StageLog, *, verbose: bool = False, threads: int = 0):
        self.workers = max(1, int(workers))
        self.log = log
        self.verbose = verbose
        self.threads = int(threads)

    def run(self, jobs: Sequence[Job], bar=None) -> None:
        todo = []
        for job in {j.target: j for j in jobs}.values():  # one run per target
            if job.complete(job.target):
                self.log.add(job.stage, job.item, "cached", 0.0)
                _advance(bar, job)
            else:
                todo.append(job)
        while todo:
            ready = [j for j in todo if all(self._complete(p, jobs) for p in j.after)]
            if not ready:
                raise RuntimeError("jobs wait for folders no job makes: "
                                   + "; ".join(f"{j.item} after {[str(p) for p in j.after]}" for j in todo))
            self._round(ready, bar)
            todo = [j for j in todo if j not in ready]

    @staticmethod
    def _complete(path: Path, jobs: Sequence[Job]) -> bool:
        maker = next((j for j in jobs if j.target == path), None)
        return maker.complete(path) if maker is not None else path.is_dir()

    def _round(self, ready: list[Job], bar) -> None:
        workers = min(self.workers, len(ready))
        threads = threads_per_process(workers, self.threads)
        if workers <= 1:
            for job in ready:
                if bar is not None:
                    bar.set_postfix_str(job.item)
                t0 = time.perf_counter()
                with library_chatter(self.verbose), torch_threads(threads):
                    job.fn(job.args)
                self._done(job, time.perf_counter() - t0, bar, threads)
            return
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_in_worker, j.fn, j.args, threads): j for j in ready}
            for f in as_completed(futures):
                self._done(futures[f], f.result(), bar, threads)

    def _done(self, job: Job, seconds: float, bar, threads: int) -> None:
        self.log.add(job.stage, job.item, "computed", seconds, threads=threads)
        if bar is not None:
            bar.set_postfix_str(job.item)
        _advance(bar, job)


def _advance(bar, job: Job) -> None:
    if bar is not None:
        bar.update(job.cost)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended (pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Stages:
    """Wall and CPU seconds of each stage, one progress bar per stage (none when quiet). CPU
    seconds do not grow when other jobs share the machine (wall ~ cpu / cores on an idle one)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, total: float = 1, desc: str | None = None):
        from tqdm.auto import tqdm

        t0, c0 = time.perf_counter(), cpu_seconds()
        bar = tqdm(total=total, desc=desc or name, unit="item", disable=self.quiet, file=sys.stderr, leave=True,
                   dynamic_ncols=True)
        try:
            yield bar
        finally:
            bar.close()
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 1)
            self.cpu_seconds[name] = round(self.cpu_seconds.get(name, 0.0) + cpu_seconds() - c0, 1)
