"""TcpServer's worker pools: the slow jobs the engine hands out, run off the engine thread (docs/STYLE.md 1.3).

Owns: the password workers (scrypt logins and registrations), which take the next job round robin across client
addresses (PROTOCOL.md 6.2 "fair admission": one queue per address, ``FairQueue``), and one key-wrap worker (chat
key wraps). No lock is held during slow crypto and one login never freezes the relay; each finished job goes
back to the engine as a ``JobDone``. Must not: touch the ServerProtocol (the engine alone does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import ErrorCode
from ..protocol.jobs import ChatKeyJob, FairQueue, Job
from ..protocol.vocabulary import JobOutcome

log = logging.getLogger("securechat.server")

IDLE_WAIT_SECONDS = 0.5


class JobPools:
    """``submit`` a job from the engine thread; *done* gets it back, run (or failed), from a worker thread."""

    def __init__(self, password_workers: int, done: Callable[[Job], None]) -> None:
        self._done = done
        self._password_jobs: FairQueue[Job] = FairQueue()
        self._password_ready = threading.Condition()
        self._stopping = False
        self._key_pool = ThreadPoolExecutor(1, thread_name_prefix="securechat-wrap")
        self.threads = [threading.Thread(target=self._password_loop, name=f"securechat-scrypt-{i}", daemon=True)
                        for i in range(password_workers)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def submit(self, job: Job) -> bool:
        """Queue *job* (password jobs fairly by address); False once the pools are shut down."""
        if not isinstance(job, ChatKeyJob):
            with self._password_ready:
                self._password_jobs.push(job.address, job)
                self._password_ready.notify()
            return True
        try:
            self._key_pool.submit(self._run, job)
        except RuntimeError:  # pool shut down: stopping
            return False
        return True

    def stop(self) -> None:
        """Drop the password jobs still queued and wake the workers so they end (join ``threads`` after)."""
        with self._password_ready:
            self._stopping = True
            self._password_jobs.clear()
            self._password_ready.notify_all()

    def shut_down_key_pool(self) -> None:
        """After the engine has stopped: finish the running wrap, drop the queued ones."""
        self._key_pool.shutdown(wait=True, cancel_futures=True)

    def _password_loop(self) -> None:
        """One password worker: the next job round robin across addresses (FairQueue), until stop()."""
        while True:
            with self._password_ready:
                while not self._password_jobs and not self._stopping:
                    self._password_ready.wait(IDLE_WAIT_SECONDS)
                if self._stopping:
                    return
                job = self._password_jobs.pop()
            if job is not None:
                self._run(job)

    def _run(self, job: Job) -> None:
        try:
            job.run()
        except Exception:
            log.exception("job %s failed", type(job).__name__)
            job.outcome, job.code = JobOutcome.FAILED, ErrorCode.INTERNAL_ERROR
        self._done(job)
