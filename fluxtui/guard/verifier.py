"""Executable verification for the responder: a cache by executable identity, and the requests
waiting while a worker hashes the file and asks the package manager (one job per identity)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fluxtui.events import ProcessKey
from fluxtui.guard.identity import ExeKey, ExeVerification, verify_executable
from fluxtui.guard.namespaces import namespace_problems
from fluxtui.guard.prompts import split
from fluxtui.guard.requests import Request

MAX_VERIFY_ATTEMPTS = 3  # an executable that changes on every attempt fails closed


class Verifier:
    """Owned by the responder thread. Results come back through `post(("verified", key,
    future, attempt))` and are applied with `on_result`."""

    def __init__(self, workers: ThreadPoolExecutor, system_dirs: tuple[str, ...],
                 post: Callable[[tuple[Any, ...]], None]) -> None:
        self.workers = workers
        self.system_dirs = system_dirs
        self.post = post
        self.verified: dict[ExeKey, ExeVerification] = {}
        self.waiting: dict[ExeKey | ProcessKey, list[Request]] = {}
        # Namespace checks read the user's own view of the file system: their own pool, so a
        # check that hangs (a FUSE file system) cannot hold up executable verification.
        self.ns_workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fluxtui-ns")

    def known(self, key: ExeKey | None) -> ExeVerification | None:
        return self.verified.get(key) if key is not None else None

    def wait(self, request: Request) -> None:
        """Queue `request` until its executable is verified (the executable must be readable:
        `request.proc.info.exe_key` is not None)."""
        key = request.proc.info.exe_key
        assert key is not None
        waiting = self.waiting.setdefault(key, [])
        waiting.append(request)
        if len(waiting) == 1:
            self._submit(key, request, 1)

    def wait_namespaces(self, request: Request) -> None:
        """Queue `request` until its process's namespaces are checked (one job per process);
        the result comes back as ("namespaces", process key, future)."""
        key = request.proc.info.key
        waiting = self.waiting.setdefault(key, [])
        waiting.append(request)
        if len(waiting) == 1:
            future = self.ns_workers.submit(namespace_problems, request.pid,
                                            request.proc.info.foreign_ns)
            future.add_done_callback(lambda f: self.post(("namespaces", key, f)))

    def on_namespaces(self, key: ProcessKey, future: Future[tuple[str, ...]]
                      ) -> tuple[list[Request], list[tuple[Request, str]]]:
        """(requests whose process is now checked, requests that failed closed)."""
        waiting = self.waiting.pop(key, [])
        try:
            flags = future.result()
        except Exception as exc:
            return [], [(r, f"failed closed: its namespaces could not be checked: {exc}")
                        for r in waiting]
        for request in waiting:
            request.proc.namespaces_checked(flags)
        return waiting, []

    def close(self) -> None:
        self.ns_workers.shutdown(wait=False, cancel_futures=True)

    def _submit(self, key: ExeKey, request: Request, attempt: int) -> None:
        future = self.workers.submit(verify_executable, request.pid, request.proc.info.exe,
                                     self.system_dirs, expected=request.proc.info.exe_key)

        def done(f: Future[ExeVerification]) -> None:
            self.post(("verified", key, f, attempt))

        future.add_done_callback(done)

    def on_result(self, key: ExeKey, future: Future[ExeVerification], attempt: int
                  ) -> tuple[list[Request], list[tuple[Request, str]]]:
        """(requests now verified, requests that failed closed with the reason)."""
        waiting = self.waiting.pop(key, [])
        try:
            verification = future.result()
        except Exception as exc:
            return [], [(r, f"failed closed: the executable could not be verified: {exc}")
                        for r in waiting]
        self.verified[verification.key] = verification  # right for the file that was hashed
        failed: list[tuple[Request, str]] = []
        if verification.key != key:
            # What was hashed is not the file these processes were identified with (it changed
            # meanwhile): apply it only to those that run exactly that file now, verify again
            # for the others.
            waiting, others = split(waiting,
                                    lambda r: current_exe_key(r.pid) != verification.key)
            if others and attempt < MAX_VERIFY_ATTEMPTS:
                self.waiting[key] = others
                self._submit(key, others[0], attempt + 1)
            else:
                failed = [(r, "failed closed: the executable kept changing while it was "
                              "verified") for r in others]
        for request in waiting:
            request.verification = request.proc.verification = verification
        return waiting, failed

    def requests(self) -> Iterator[Request]:
        for waiting in self.waiting.values():
            yield from waiting

    def count(self) -> int:
        return sum(len(rs) for rs in self.waiting.values())

    def take(self, leaves: Callable[[Request], bool]) -> list[Request]:
        taken: list[Request] = []
        for key, waiting in list(self.waiting.items()):
            self.waiting[key], leaving = split(waiting, leaves)
            taken += leaving
        return taken


def current_exe_key(pid: int) -> ExeKey | None:
    try:
        return ExeKey.of(os.stat(f"/proc/{pid}/exe"))
    except OSError:
        return None
