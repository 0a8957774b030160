"""`engine=ray`: a batch's items on Ray actors, one per GPU, scheduled dynamically (`pip install "know3d[ray]"`).

Who does what:

- **The driver** (this process) does everything the local engine does around an item, so the row checks, the
  finished-asset policy, locks and the journal behave the same: every row was checked before any work
  (`BatchContext.checks`); it takes the item's `AssetLock`, applies the policy (`BatchContext.settle`), and alone
  counts, prints (stdout JSON lines, progress) and appends `results.jsonl` before it releases the lock.
- **Each actor** holds the pipelines of the rows' configurations (`batch.PipelineCache`, as the local engine does:
  a row with its own `mode` / `preview` / `overrides` cells comes with the configuration the driver composed and
  checked; models load on first use and stay loaded while rows keep those settings) and runs `batch.generate_row`
  (the local engine's code for one item), which writes the asset folder all or nothing (`write_asset`) under the
  driver's lock. Assets go straight to the shared disk, never through the driver, so `--out` and the images must
  be on a filesystem every Ray node sees at the same path (an actor checks that it sees the driver's
  `results.jsonl` before it takes work; relative paths are taken from the driver's working folder).

Scheduling: every idle actor gets the next item (one item in flight per actor), so a slow item holds up its actor
only. An item that fails with a runtime error (out of memory, a generation failure, anything unexpected) or whose
actor died goes back to the queue for another actor, up to `engine.ray.max_retries` more attempts; a bad input is
not retried. A dead actor (process or node lost, `ray.kill`) is replaced, up to `engine.ray.max_lost_actors` times,
after the driver has cleaned what its item left in `--out`. Ctrl-C kills the actors, cleans their items' leftovers
and lets the batch end with its summary (exit 130).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch import (
    RESULTS_FILE,
    BatchContext,
    Engine,
    Outcome,
    PipelineCache,
    RunOptions,
    failed,
    generate_row,
)
from .config import Know3dConfig, RayEngineConfig
from .errors import (
    BackendUnavailable,
    GenerationError,
    Know3dError,
    OutOfMemory,
    OutputError,
    UsageError,
    WriteFailure,
)
from .manifest import ManifestRow
from .outputs import AssetLock, recover
from .pipeline import AssetJob

logger = logging.getLogger(__name__)

# Failure codes that another attempt, on another device or node, may fix; a bad input or setting fails every time.
RETRYABLE = frozenset({OutOfMemory.code, GenerationError.code, BackendUnavailable.code, WriteFailure.code,
                       Know3dError.code, "internal", "worker_lost"})
_POLL_S = 0.5  # longest wait for a result: Ctrl-C is handled between waits
_KILL_WAIT_S = 10.0  # how long cancelled items may take to end once their actors are killed


def ray_engine() -> Engine:
    """The Ray engine. Raises `UsageError` (exit 2) when Ray is not installed, before any work starts."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError('engine=ray needs Ray: pip install "know3d[ray]" (or use engine=local)') from None
    return run_on_ray


def run_on_ray(rows: list[ManifestRow], ctx: BatchContext) -> None:
    """Run `rows` on actors of the configured Ray cluster; see the module docstring."""
    import ray

    # Ray's driver prints raylet errors ("a worker died ...") on sys.stdout, which carries JSON lines only
    with redirect_stdout(sys.stderr):
        started = connect(ray, ctx.configs.base.engine.ray.address)
        try:
            _Driver(ray, ctx).run(rows)
        finally:
            if started:
                ray.shutdown()


def connect(ray: Any, address: str | None) -> bool:
    """Connect to `address`, else `$RAY_ADDRESS`, else start a local Ray (none if this process is connected already).
    True when this call connected, so the caller disconnects at the end."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"log_to_driver": False}  # workers' output must not reach the driver's stdout
    if address is None:
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendUnavailable(f"cannot connect to the Ray cluster at {address!r} ({exc}); check "
                                 "engine.ray.address / RAY_ADDRESS, or leave both unset for a local Ray") from exc
    logger.info("connected to Ray (%s)", address or "a new local instance")
    return True


def actor_plan(resources: dict[str, float], settings: RayEngineConfig) -> tuple[int, float]:
    """(number of actors, GPUs each) for a cluster with `resources` (`ray.cluster_resources()`): one actor per
    `gpus_per_actor` GPUs, or `cpu_actors` CPU actors on a cluster without GPUs; `actors` overrides the count."""
    gpus = resources.get("GPU", 0.0)
    if gpus > 0 and settings.gpus_per_actor > 0:
        count = settings.actors or max(1, int(gpus // settings.gpus_per_actor))
        if count * settings.gpus_per_actor > gpus:
            logger.warning("%d actors x %s GPUs is more than the cluster's %s GPUs: some wait for GPUs to free up",
                           count, settings.gpus_per_actor, gpus)
        return count, settings.gpus_per_actor
    return settings.actors or settings.cpu_actors, 0.0


class BatchWorker:
    """A Ray actor's state: the pipelines of the rows' configurations, whose models stay loaded across items."""

    def __init__(self, cfg: Know3dConfig, out: str, cwd: str, argv: list[str] | None = None):
        import torch

        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative image paths resolve as on the driver
        if argv is not None:
            sys.argv = list(argv)  # metadata.json records the command that made the asset, not Ray's worker
        # CPU float reductions depend on the thread count: files are byte-identical to a local run with as many
        torch.set_num_threads(max(1, round(cfg.engine.ray.cpus_per_actor)))
        self.out = Path(out)
        self.pipelines = PipelineCache()
        self.problem: Know3dError | None = None
        try:
            if not (self.out / RESULTS_FILE).is_file():
                raise OutputError(f"{out} on Ray node {socket.gethostname()} is not the driver's output folder: with "
                                  "engine=ray, --out (and the images) must be on a filesystem every node sees at the "
                                  "same path")
            self.pipelines.get(cfg)  # checks the command's models and settings on this node
        except Know3dError as exc:
            self.problem = exc

    def ready(self) -> Know3dError | None:
        """Why this actor cannot take work, or None."""
        return self.problem

    def run(self, row: ManifestRow, job: AssetJob, cfg: Know3dConfig, options: RunOptions) -> Outcome:
        """One item with the row's configuration `cfg` (composed and checked by the driver)."""
        try:
            pipeline = self.pipelines.activate(self.pipelines.get(cfg))
        except Know3dError as exc:  # this node lacks a model the row's settings need
            return failed(row, exc)
        return generate_row(row, job, pipeline, self.out, options)


@dataclass
class _Item:
    row: ManifestRow
    job: AssetJob
    cfg: Know3dConfig  # the row's configuration
    lock: AssetLock  # held by the driver from the first attempt until the item's line is in results.jsonl
    attempts: int = 0
    tried: set[int] = field(default_factory=set)  # serials of the actors it ran on


class _Driver:
    """The scheduling loop: actors, the queue, and what is in flight."""

    def __init__(self, ray: Any, ctx: BatchContext):
        self.ray, self.ctx, self.settings = ray, ctx, ctx.configs.base.engine.ray
        self.actor_class = ray.remote(BatchWorker)
        self.actor_resources: dict[str, float] = {}
        self.actors: dict[int, Any] = {}  # serial -> live actor handle
        self.idle: list[int] = []  # serials of ready actors without an item
        self.inflight: dict[Any, tuple[int, _Item | None]] = {}  # ref -> (actor serial, item; None for `ready`)
        self.queue: deque[ManifestRow] = deque()  # rows not looked at yet
        self.retry: deque[_Item] = deque()  # items waiting for another attempt
        self.deferred: list[ManifestRow] = []  # rows whose id another process held
        self.held: dict[str, _Item] = {}  # id -> item whose lock the driver holds (queued, running or retried)
        self.serials = 0
        self.lost = 0
        self.stop = False

    def run(self, rows: list[ManifestRow]) -> None:
        self.queue.extend(rows)
        count, gpus = actor_plan(self.ray.cluster_resources(), self.settings)
        self.actor_resources = {"num_gpus": gpus, "num_cpus": self.settings.cpus_per_actor}
        logger.info("Ray engine: %d actors, %s GPUs and %s CPUs each", count, gpus, self.settings.cpus_per_actor)
        try:
            for _ in range(count):
                self._start_actor()
            self._loop()
        except BaseException:
            self._cancel()
            raise
        finally:
            for actor in self.actors.values():
                self.ray.kill(actor, no_restart=True)
            for item in self.held.values():  # left when the batch stopped early or was cancelled
                item.lock.release()

    # ------------------------------------------------------------------------------- loop
    def _loop(self) -> None:
        while True:
            self._dispatch()
            working = any(item is not None for _, item in self.inflight.values())
            if not working and (self.stop or not (self.queue or self.retry)):  # actors still starting are not waited for
                if self.stop or not self.deferred:
                    return
                # everything else is done: wait for an id another process held, then it is usually finished
                row = self.deferred.pop(0)
                lock = AssetLock(self.ctx.out, row.id)
                lock.acquire()
                item = self._take(row, lock, deferred=True)
                if item is not None:
                    self.retry.append(item)
                continue
            done, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=_POLL_S)
            for ref in done:
                self._collect(ref)

    def _dispatch(self) -> None:
        for serial in list(self.idle):
            if self.stop:
                return
            item = self._next_item(serial)
            if item is None:
                continue
            self.idle.remove(serial)
            item.attempts += 1
            item.tried.add(serial)
            ref = self.actors[serial].run.remote(item.row, item.job, item.cfg, self.ctx.options)
            self.inflight[ref] = (serial, item)

    def _next_item(self, serial: int) -> _Item | None:
        """A retry this actor has not tried (or any, once every live actor has), else the next new row."""
        for item in self.retry:
            if serial not in item.tried or set(self.actors) <= item.tried:
                self.retry.remove(item)
                return item
        while self.queue and not self.stop:
            item = self._take(self.queue.popleft())
            if item is not None:
                return item
        return None

    def _take(self, row: ManifestRow, lock: AssetLock | None = None, deferred: bool = False) -> _Item | None:
        """The row as an item to run, holding its lock; None when it needs no actor (reported as a row that failed
        its check, or settled by the finished-asset policy) or another process holds its id (deferred)."""
        check = self.ctx.checks.get(row.line)
        if check is not None:
            self._finish(check)
            return None
        if lock is None:
            lock = AssetLock(self.ctx.out, row.id)
            if not lock.acquire(blocking=False):
                logger.info("%s is being generated by another process (%s); coming back to it at the end",
                            row.id, lock.holder() or "unknown")
                self.deferred.append(row)
                return None
        # from now on Ctrl-C releases the lock
        item = self.held[row.id] = _Item(row, self.ctx.job(row), self.ctx.configs.of(row), lock)
        settled = self.ctx.settle(row, item.job, deferred=deferred)
        if settled is not None:
            self._finish(settled, item)
            return None
        return item

    def _collect(self, ref: Any) -> None:
        from ray.exceptions import RayActorError, RayError

        serial, item = self.inflight.pop(ref)
        try:
            result = self.ray.get(ref)
        except RayActorError as exc:
            self._lost(serial, item, exc)
            return
        except RayError as exc:  # the task failed outside `generate_row` (e.g. its result could not be sent back)
            if item is None:
                raise
            self.idle.append(serial)
            self._retry_or_fail(item, failed(item.row, Know3dError(f"Ray: {_first_line(exc)}"), "internal"))
            return
        if item is None:  # the actor's `ready`
            if result is not None:
                raise result
            self.idle.append(serial)
            return
        self.idle.append(serial)
        event = result.event
        if event["status"] == "failed" and result.stop is None and event.get("code") in RETRYABLE:
            self._retry_or_fail(item, result)
        else:
            self._finish(result, item)

    def _finish(self, outcome: Outcome, item: _Item | None = None) -> None:
        """Report an outcome, then release the item's lock (its line is in results.jsonl)."""
        try:
            if self.ctx.finish(outcome):
                self.stop = True
        finally:
            if item is not None:
                self.held.pop(item.job.id).lock.release()

    def _retry_or_fail(self, item: _Item, outcome: Outcome) -> None:
        if item.attempts <= self.settings.max_retries:
            logger.warning("%s: attempt %d failed (%s); retrying on another actor", item.job.id, item.attempts,
                           outcome.event["error"])
            self.retry.append(item)
        else:
            self._finish(outcome, item)

    # ------------------------------------------------------------------------------- actors
    def _start_actor(self) -> None:
        self.serials += 1
        actor = self.actor_class.options(**self.actor_resources).remote(self.ctx.configs.base, str(self.ctx.out),
                                                                        os.getcwd(), sys.argv)
        self.actors[self.serials] = actor
        self.inflight[actor.ready.remote()] = (self.serials, None)

    def _lost(self, serial: int, item: _Item | None, exc: Exception) -> None:
        """An actor died (its process or node): clean and re-queue its item, replace it while the budget lasts."""
        reason = _first_line(exc)
        logger.warning("Ray actor %d was lost (%s)", serial, reason)
        actor = self.actors.pop(serial)
        self.ray.kill(actor, no_restart=True)  # an unreachable actor must not go on writing
        self.lost += 1
        if item is not None:
            recover(self.ctx.out, item.job.id)  # the lock is still ours: remove the dead writer's partial folder
            self._retry_or_fail(item, failed(item.row, Know3dError(f"the Ray actor running it was lost ({reason})"),
                                             "worker_lost"))
        if self.lost <= self.settings.max_lost_actors:
            self._start_actor()
        elif not self.actors:
            raise BackendUnavailable(f"every Ray actor was lost ({self.lost} in all, engine.ray.max_lost_actors="
                                     f"{self.settings.max_lost_actors}); last: {reason}. Finished assets are kept: "
                                     "run the batch again to resume")

    def _cancel(self) -> None:
        """Kill the actors, wait for their items to end, and clean what those items left (their locks are still
        ours; `run` releases them)."""
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)
        running = [ref for ref, (_, item) in self.inflight.items() if item is not None]
        if running:
            self.ray.wait(running, num_returns=len(running), timeout=_KILL_WAIT_S)
        if self.held:
            logger.warning("cancelled %d unfinished items (nothing of them was kept): %s", len(self.held),
                           ", ".join(self.held))
        for asset_id in self.held:
            recover(self.ctx.out, asset_id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["RETRYABLE", "BatchWorker", "actor_plan", "connect", "ray_engine", "run_on_ray"]
