"""The prompts waiting for an answer: requests queued per (executable, group, user, flags),
their deadlines and pauses, the views the UI shows, and the rule an answer leaves behind."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from fluxtui.guard.access_rules import FIVE_MINUTES, RuleBook, SavedRule, Scope, TempRule
from fluxtui.guard.events import PromptView
from fluxtui.guard.identity import process_tree
from fluxtui.guard.requests import Prompt, Request, prompt_key, requester_of


def split(requests: list[Request], leaves: Callable[[Request], bool]
          ) -> tuple[list[Request], list[Request]]:
    """(staying, leaving)."""
    staying: list[Request] = []
    leaving: list[Request] = []
    for r in requests:
        (leaving if leaves(r) else staying).append(r)
    return staying, leaving


class PromptQueue:
    def __init__(self, tree: Callable[[int], tuple[tuple[int, str], ...]] = process_tree
                 ) -> None:
        self.prompts: dict[int, Prompt] = {}
        self._tree = tree

    def add(self, request: Request) -> None:
        key = prompt_key(request)
        for prompt in self.prompts.values():
            if prompt.key == key:
                prompt.requests.append(request)
                return
        self.prompts[request.id] = Prompt(request.id, request, self._tree(request.pid))

    def pop(self, prompt_id: int) -> Prompt | None:
        return self.prompts.pop(prompt_id, None)

    def requests(self) -> Iterator[Request]:
        for prompt in self.prompts.values():
            yield from prompt.requests

    def count(self) -> int:
        return sum(len(p.requests) for p in self.prompts.values())

    def take(self, leaves: Callable[[Request], bool]) -> list[Request]:
        """Remove and return the requests for which `leaves` holds; empty prompts go away."""
        taken: list[Request] = []
        for prompt_id, prompt in list(self.prompts.items()):
            prompt.requests, leaving = split(prompt.requests, leaves)
            taken += leaving
            if not prompt.requests:
                del self.prompts[prompt_id]
        return taken

    def hold(self, prompt_id: int, now: float, pause: float, cap: float) -> bool:
        """Pause the countdown of a prompt's requests for `pause` seconds, up to `cap` seconds
        in all per request. False when the prompt is gone."""
        prompt = self.prompts.get(prompt_id)
        if prompt is None:
            return False
        for r in prompt.requests:
            extension = (now + pause) - max(now, r.paused_until)
            extension = min(extension, cap - r.paused_total)
            if extension <= 0:
                continue
            r.paused_until = max(now, r.paused_until) + extension
            r.deadline += extension
            r.paused_total += extension
        return True

    def views(self, interaction_cap: float, default_allow: bool) -> tuple[PromptView, ...]:
        views = []
        for prompt in self.prompts.values():
            front = prompt.requests[0]
            soonest = min(prompt.requests, key=lambda r: r.deadline)
            views.append(PromptView(
                id=prompt.id, group=front.group.name, technique=front.group.technique,
                requester=requester_of(front.proc.info, front.verification, front.proc.flags),
                tree=prompt.tree,
                files=tuple(dict.fromkeys(r.file for r in prompt.requests)),
                requests=len(prompt.requests),
                pids=tuple(dict.fromkeys(r.pid for r in prompt.requests)),
                deadline=soonest.deadline, paused_until=soonest.paused_until,
                pause_left=max(0.0, interaction_cap - soonest.paused_total),
                created=prompt.created,
                default_action="allow" if default_allow else "deny"))
        return tuple(views)


def remember_answer(prompt: Prompt, allow: bool, scope: Scope, label: str, book: RuleBook,
                    now: float) -> SavedRule | None:
    """Turn an answer with a scope other than "once" into a rule: an "always" rule (returned,
    for the caller to persist) or a temporary allowance. The reason recorded is the label."""
    front = prompt.requests[0]
    verification = front.verification
    if verification is None or scope == "once":
        return None
    group = front.group.name
    if scope == "always":
        rule = SavedRule(
            id=SavedRule.make_id(verification.path, verification.sha256, group),
            action="allow" if allow else "deny", group=group, executable=verification.path,
            sha256=verification.sha256,
            created=datetime.now(UTC).isoformat(timespec="seconds"), decided_by=label)
        book.add_saved(rule)
        return rule
    if allow:
        expires = now + FIVE_MINUTES if scope == "5min" else math.inf
        book.add_temp(TempRule(scope, group, verification.path, verification.sha256,
                               front.proc.info.key if scope == "process" else None, expires))
    return None
