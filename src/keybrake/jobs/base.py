"""The one shape of a background job, and the runner that starts and stops the app's jobs.

A job is a pass (`run_once`, returning how many rows or events it handled) repeated forever by
one shared loop (`Job.run_forever`): wait `delay_s()` seconds, run a pass, and so on. A pass that
fails because the store (or, for retention, the export file) is unavailable is reported — one
ERROR line, `failure`, with the error — and the next pass comes at the usual time: a job never
stops on an outage and never retries faster than its interval, so a down store is not hammered.
What a failed pass could not do stays due: it is read again from the store on the next pass, or
kept in memory until then (alert events held, delivery outcomes not yet written). Any other
exception ends the job's task and is raised again when the app stops (`JobRunner.stop`), as a
bug should be.

Stopping cancels every job at once, then waits for each in list order; a job's `on_stop` runs
inside its cancelled task. A job marked `stop_late` (alert delivery) is cancelled only when the
jobs listed before it have stopped, so what they queue while stopping can still be delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import event


class Job(ABC):
    """One background job: a name, a pass, the delay before each pass, and how failures are reported.

    Subclasses set `name` (the task is named `keybrake-<name>`), `log` and `failure` (the logger
    and the ERROR message of a failed pass), and may set `handled` (the exceptions reported and
    survived; default EnforcementUnavailable), `first_pass_now` (run a pass at start instead of
    waiting a delay first) and `stop_late` (see the module docstring).
    """

    name: ClassVar[str]
    log: ClassVar[logging.Logger]
    failure: ClassVar[str]
    handled: ClassVar[tuple[type[Exception], ...]] = (EnforcementUnavailable,)
    first_pass_now: ClassVar[bool] = False
    stop_late: ClassVar[bool] = False

    @abstractmethod
    def delay_s(self) -> float:
        """Seconds to wait before the next pass (the job's interval, from its settings)."""

    @abstractmethod
    async def run_once(self) -> int:
        """One pass; returns how many rows or events it handled. Raises what `handled` lists on an outage."""

    def failure_fields(self) -> dict[str, Any]:
        """Fields of the failed pass's log line besides `error` (e.g. the vendor of a reconcile pass)."""
        return {}

    async def on_stop(self) -> None:  # noqa: B027 (a hook: most jobs hold nothing to release)
        """Run once when the job is stopped (cancelled), inside its task: release what it holds."""

    async def run_forever(self) -> None:
        """Passes forever, `delay_s()` apart; a failed pass is logged and the next one comes on time."""
        try:
            if not self.first_pass_now:
                await asyncio.sleep(self.delay_s())
            while True:
                try:
                    await self.run_once()
                except self.handled as exc:
                    event(self.log, self.failure, logging.ERROR, **self.failure_fields(), error=str(exc))
                await asyncio.sleep(self.delay_s())
        finally:
            await self.on_stop()


class JobRunner:
    """Runs a list of jobs, each in its own task, and stops them in list order (module docstring)."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self._tasks: list[tuple[Job, asyncio.Task[None]]] = []

    def start(self) -> None:
        """One task per job, named `keybrake-<name>`, in list order."""
        for job in self.jobs:
            self._tasks.append((job, asyncio.create_task(job.run_forever(), name=f"keybrake-{job.name}")))

    async def stop(self) -> None:
        """Cancel every job (a `stop_late` one once the jobs before it ended) and wait for each.

        Raises again what ended a job's task other than cancellation (a bug, never an outage)."""
        for job, task in self._tasks:
            if not job.stop_late:
                task.cancel()
        for _, task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
