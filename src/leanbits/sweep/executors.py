"""Executors: run a batch of independent stage tasks and report each as it finishes.

* ``inline`` - in this process, one after another (tests, debugging with pdb);
* ``local`` - separate processes (``concurrent.futures.ProcessPoolExecutor``, spawn
  context, ``jobs`` workers), the default;
* ``ray`` - tasks on a Ray cluster (``pip install 'leanbits[ray]'``); a local one is
  started when no ``address`` is given. Workers must see the same file system as the driver
  (stage directories are passed as paths).

All three call the same function on the same picklable task, and each task sets its own
seeds and one torch thread, so results do not depend on the executor.

Workers die with their parent: a ``local`` worker ends as soon as the process that started
it ends, however it ends (``kill -9`` included: the kernel signals it on Linux, and a
watcher thread polls the parent everywhere else), and :meth:`Executor.terminate` stops
workers mid-task when the run is interrupted (SIGINT, SIGTERM). Finished stages are kept,
so the same command resumes.

Example:
    >>> with make_executor("local", jobs=2) as ex:  # doctest: +SKIP
    ...     for index, result, error in ex.run(execute_stage, tasks):
    ...         ...
"""

from __future__ import annotations

import abc
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

from leanbits.errors import ConfigError, LeanbitsError

EXECUTORS = ("local", "ray")
#: what :meth:`Executor.run` yields: (task index, result or None, error or None)
Outcome = tuple[int, Any, BaseException | None]


class Executor(abc.ABC):
    """Base class: ``run`` yields outcomes in completion order; ``cancel`` drops queued ones."""

    name = "base"

    @abc.abstractmethod
    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        """Run ``fn`` on every task; yield outcomes as they complete."""

    def cancel(self) -> None:  # noqa: B027 - a default no-op
        """Do not start tasks that have not started yet (running ones finish)."""

    def close(self) -> None:  # noqa: B027 - a default no-op
        """Release workers (running tasks finish first)."""

    def terminate(self) -> None:
        """Stop workers now, running tasks included (an interrupted run); then close."""
        self.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


#: Linux ``prctl`` option: the signal a process gets when its parent dies
_PR_SET_PDEATHSIG = 1
#: how often a worker checks that its parent is alive where the kernel cannot tell it
_PARENT_POLL_S = 0.5


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:  # re-parented: the driver is gone
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when ``parent`` (the driver) ends.

    On Linux the kernel sends SIGKILL the moment the parent dies (``PR_SET_PDEATHSIG``);
    elsewhere, and as a fallback, a daemon thread polls the parent's PID. Without this, a
    driver killed with ``kill -9`` left its workers (and so the multiprocessing resource
    tracker, which waits for them) running for good.

    Args:
        parent: PID of the process that started the pool.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass  # the watcher thread below still covers it
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="leanbits-parent-watch",
                     daemon=True).start()


class InlineExecutor(Executor):
    """Runs tasks in the calling process, in order."""

    name = "inline"

    def __init__(self) -> None:
        self._cancelled = False

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        self._cancelled = False
        for i, task in enumerate(tasks):
            if self._cancelled:
                return
            try:
                yield i, fn(task), None
            except Exception as exc:  # noqa: BLE001 - reported to the caller as an outcome
                yield i, None, exc

    def cancel(self) -> None:
        self._cancelled = True


class LocalExecutor(Executor):
    """A pool of ``jobs`` spawned worker processes, kept for all batches of a run.

    Spawn, not fork: a forked child inherits torch's thread pools and locks mid-state,
    which can deadlock, and spawn behaves the same on Linux, macOS and Windows.
    """

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        if not tasks:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent, initargs=(os.getpid(),),
            )
        index = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        self._futures = list(index)
        for fut in as_completed(index):
            if fut.cancelled():
                continue
            exc = fut.exception()
            yield index[fut], (None if exc else fut.result()), exc

    def cancel(self) -> None:
        for fut in self._futures:
            fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self.cancel()
        # concurrent.futures has no public way to stop a running task: end the workers
        # (SIGTERM, then SIGKILL for one that does not go), then let the pool wind down.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 5.0
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray  # optional dependency (leanbits[ray]), loaded only for this executor
    except ImportError:
        raise LeanbitsError(
            "the ray executor needs Ray: pip install 'leanbits[ray]' (or use --executor local)"
        ) from None
    return ray


class RayExecutor(Executor):
    """Tasks on a Ray cluster: the one at ``address``, or a local one started here.

    Args:
        address: a Ray cluster address (``ray://host:10001``, ``auto``); None starts a
            local instance, shut down again by :meth:`close`.
        num_cpus: CPUs of a locally started instance (default: all).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self._ray = _import_ray()
        self.address = address
        self.num_cpus = num_cpus
        self._started = False
        self._pending: list[Any] = []

    def _ensure(self) -> Any:
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None and self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(address=self.address, **kwargs)
            except ConnectionError as exc:
                raise LeanbitsError(f"cannot reach the Ray cluster at {self.address}: {exc}"
                                    ) from None
            self._started = True
        return ray

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Outcome]:
        if not tasks:
            return
        ray = self._ensure()
        # max_retries=0: a stage that failed would fail again, and retries would hide it.
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        self._pending = list(refs)
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            ref = done[0]
            try:
                yield refs[ref], ray.get(ref), None
            except ray.exceptions.TaskCancelledError:
                continue
            except ray.exceptions.RayTaskError as exc:
                # Hand back the stage's own exception (e.g. a TrainingError) when there is one.
                yield refs[ref], None, getattr(exc, "cause", None) or exc
            except ray.exceptions.RayError as exc:
                yield refs[ref], None, exc

    def cancel(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def make_executor(name: str, jobs: int | None = None, address: str | None = None) -> Executor:
    """An executor by name.

    Args:
        name: ``local``, ``ray`` or ``inline``.
        jobs: worker processes (local; default 1) or CPUs of a locally started Ray
            instance (ray; default all).
        address: Ray cluster address (ray only).

    Raises:
        ConfigError: unknown name or bad ``jobs``.
        LeanbitsError: ``ray`` asked for but not installed.
    """
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if name == "local":
        return LocalExecutor(jobs or 1)
    if name == "ray":
        return RayExecutor(address, num_cpus=jobs if address is None else None)
    if name == "inline":
        return InlineExecutor()
    raise ConfigError(f"unknown executor {name!r}; valid: {', '.join((*EXECUTORS, 'inline'))}")
