"""The model behind the server, loaded on first use and kept warm, and the one thread that runs it.

Requests reach the model one at a time, in arrival order, on that thread: the event loop goes on
reading the editor's messages meanwhile, so that `$/cancelRequest`, a newer request or a setting
can stop the job that runs. A job stops at the end of the denoising pass it is in."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from dcode.complete.completer import Completer
from dcode.complete.remote import RemoteCompleter
from dcode.lsp.config import same_model
from dcode.settings import Settings

if TYPE_CHECKING:  # both import torch: only once a model runs
    from dcode.diffusion.sampler import HoleState
    from dcode.edit.proposal import Proposal

Result = TypeVar("Result")


class WorkFailed(Exception):
    """The model could not answer: the editor contract's error `code` and its one-line message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def checked(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer of `Completer.answer` or `Completer.guarded`, its error raised as WorkFailed."""
    error = answer.get("error")
    if isinstance(error, dict):
        raise WorkFailed(str(error.get("code")), str(error.get("message")))
    return answer


@dataclass(eq=False)
class Job:
    """One request's model work. `cancel` (from `$/cancelRequest`, a newer request that makes it
    moot, or shutdown) asks it to stop; the work calls `tick` after every pass and stops when told."""

    on_pass: Callable[[int, str], None] | None = None  # (passes so far, what the pass did)
    passes: int = 0
    reason: str | None = None  # why it was stopped
    stop: threading.Event = field(default_factory=threading.Event)

    def cancel(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()

    def tick(self, message: str) -> bool:
        """One more pass; False when the job must stop."""
        self.passes += 1
        if self.on_pass is not None:
            self.on_pass(self.passes, message)
        return not self.stopped


def drive(stream: Iterator[HoleState | Proposal], job: Job) -> Proposal | None:
    """A workflow stream run to its proposal, one tick a pass; None when the job was stopped."""
    from dcode.diffusion.sampler import HoleState

    proposal = None
    for item in stream:
        if not isinstance(item, HoleState):
            proposal = item
        elif not job.tick(f"{item.masked} of {len(item.tokens)} tokens still masked"):
            return None
    return proposal


class ModelWorker:
    """A Completer (the model, local or at the `endpoint`, and the editor contract) and the
    thread its work runs on."""

    def __init__(self, settings: Settings, flags: dict[str, Any]) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcode-model")
        self.completer = self._completer(settings, flags)
        self.jobs: set[Job] = set()

    @staticmethod
    def _completer(settings: Settings, flags: dict[str, Any]) -> Completer:
        completer = (RemoteCompleter if settings.endpoint else Completer)(flags)
        completer.settings = settings  # with the workspace's project file, which Completer alone does not read
        return completer

    @property
    def settings(self) -> Settings:
        return self.completer.settings

    def configure(self, settings: Settings, flags: dict[str, Any]) -> None:
        """New settings for the next job; a different model (or device, endpoint, threads) is
        loaded on first use, and the old one is let go once the job using it ends."""
        if same_model(self.completer.settings, settings):
            self.completer.settings = settings
        else:
            self.completer = self._completer(settings, flags)

    async def run(self, work: Callable[[Completer, Job], Result], job: Job) -> Result | None:
        """`work(completer, job)` on the model's thread; None when the job was stopped before it
        started. Cancelling the awaiting task (`$/cancelRequest`) stops the job."""
        completer = self.completer
        self.jobs.add(job)

        def start() -> Result | None:
            return None if job.stopped else work(completer, job)

        try:
            return await asyncio.wrap_future(self.executor.submit(start))
        except asyncio.CancelledError:
            job.cancel("cancelled by the editor")
            raise
        finally:
            self.jobs.discard(job)

    def close(self) -> None:
        """Stop every job (each at the end of its pass) and let the thread end."""
        for job in list(self.jobs):
            job.cancel("the server is shutting down")
        self.executor.shutdown(wait=False, cancel_futures=True)
