"""Where co-exploration's design points are solved: serially in this process, in a local process
pool, or on Ray; each solution is handed back as it finishes.

Ctrl-C (search/interrupt.py): the designs being solved answer "interrupted" with their best so far
and the designs not started are dropped. A pool's workers ignore SIGINT between designs and each
solve takes it while it runs, as a terminal sends it to the whole process group."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from ..formulation.backends import STOP
from ..search import interrupt

EXECUTORS = ("serial", "pool", "ray")
_INTERRUPTED: Any = None  # in a pool worker: the parent's event, set on Ctrl-C


def _solve_point(args: tuple) -> Any:
    """One design's solve (runs in a worker process: module-level so it pickles); None once the
    pool's `_INTERRUPTED` event is set (a design queued before a Ctrl-C)."""
    from ..search.solve import solve

    if _INTERRUPTED is not None and _INTERRUPTED.is_set():
        return None
    work, hardware, space, backend, time_limit_s, threads = args
    return solve(work, hardware, space=space, backend=backend, time_limit_s=time_limit_s, threads=threads)


def _pool_worker(interrupted: Any) -> None:
    """A pool worker: Ctrl-C between designs is for the parent (the solve running takes its own)."""
    global _INTERRUPTED
    _INTERRUPTED = interrupted
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ray_module() -> Any:
    try:
        import ray  # noqa: PLC0415 - optional dependency, imported only when asked for
    except ImportError:
        raise ImportError("executor 'ray' needs Ray, which is not installed: pip install meshmap[ray]") from None
    return ray


def _run_ray(jobs: list[tuple], workers: int, threads: int, address: str | None,
             done: Callable[[int, Any], None]) -> None:
    ray = _ray_module()
    started = False
    if not ray.is_initialized():
        # quiet: Ray's start-up notes would mix with a command's own output on stderr
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if address is None:
            # a local Ray sized to the pool: `workers` tasks of `threads` CPUs at a time; workers
            # find this package even when it is run from a source tree rather than installed
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
            kwargs.update(num_cpus=workers * threads, runtime_env={"env_vars": {"PYTHONPATH": path}})
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=threads)(_solve_point)
        refs = {remote.remote(job): i for i, job in enumerate(jobs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done(refs[ref], ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def solve_points(executor: str, jobs: list[tuple], workers: int, threads: int, address: str | None,
                 done: Callable[[int, Any], None]) -> None:
    """Solve every job (optimizer.solve's work, hardware, space, backend, time_limit_s, threads) with
    `executor` (one of EXECUTORS), calling done(index of the job, solution) as each finishes."""
    if executor == "serial" or not jobs:
        for i, job in enumerate(jobs):
            if interrupt.requested():
                break
            done(i, _solve_point(job))
    elif executor == "pool":
        interrupted = multiprocessing.Event()  # set on Ctrl-C: a design not yet started is skipped
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=_pool_worker,
                                 initargs=(interrupted,)) as pool, STOP.running(interrupted.set):
            futures = {pool.submit(_solve_point, job): i for i, job in enumerate(jobs)}
            try:
                for fut in as_completed(futures):
                    if interrupt.requested():  # the designs not started are dropped
                        for other in futures:
                            other.cancel()
                    sol = None if fut.cancelled() else fut.result()
                    if sol is not None:
                        done(futures[fut], sol)
            except BaseException:  # a failed point: do not wait for the designs not yet started
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    else:
        _run_ray(jobs, workers, threads, address, done)
