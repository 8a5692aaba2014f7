"""What changed in a persistence place, without copying secrets, and whether it is an alert.

- `read_content` turns a small file into what fluxtui keeps of it between two changes: the lines
  of a text file, the keys of an authorized_keys file (type, comment, fingerprint: never the key
  itself), one hash per user of /etc/shadow (never a hash or salt), and `diff` compares two.
- `judge` decides: a change by an expected writer (a verified program listed for the place, or a
  verified package manager and what it runs) is a low-severity event; by anything else it is an
  alert of the place's severity; a new crontab / at entry or a new authorized key is always an
  alert (medium), whoever added it. Rule ids are `persistence.*`; `rules.disabled` and
  `rules.exceptions` apply (`RuleFilter`, as for every other rule).
Nothing here imports textual.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import re
from dataclasses import dataclass, field

from fluxtui.config import PersistencePlace
from fluxtui.detection.syscall_rules import Finding
from fluxtui.events import ProcessKey, Severity
from fluxtui.untrusted_text import visible

RULE_UNEXPECTED = "persistence.unexpected_write"
RULE_EXPECTED = "persistence.expected_change"
RULE_CRON = "persistence.schedule_entry"
RULE_KEY = "persistence.authorized_key"
RULE_BURST = "persistence.burst"
MAX_LINES_SHOWN = 10
TOKEN_MIN = 24
KEY_TYPES = re.compile(r"^(?:ssh-|ecdsa-|sk-)[a-z0-9@.-]+$")
# a run of token characters (base64, hex, JWT, crypt(3) hashes), with base64 padding
_TOKEN = re.compile(r"[A-Za-z0-9+/_\-.$~]{" + str(TOKEN_MIN) + ",}={0,2}")
_SEVERITY = {"medium": Severity.MEDIUM, "high": Severity.HIGH, "critical": Severity.CRITICAL}


def redact(line: str) -> str:
    """A line with its long tokens (keys, hashes, passwords, API tokens) replaced by their
    length; paths and plain words of any length stay."""
    def hide(match: re.Match[str]) -> str:
        token = match.group()
        if token.startswith(("/", "~/", "./")) and all(
                len(part) < 40 for part in token.split("/")):
            return token  # a path
        letters = any(c.isalpha() for c in token)
        digits = any(c.isdigit() for c in token)
        if (letters and digits) or len(token) >= 40:
            return f"[redacted {len(token)} chars]"
        return token
    return visible(_TOKEN.sub(hide, line))


@dataclass(frozen=True)
class KeyInfo:
    key_type: str
    comment: str
    fingerprint: str  # SHA256:... as ssh-keygen -l prints it

    def describe(self) -> str:
        return visible(f"{self.key_type} {self.fingerprint} {self.comment}".strip())


def parse_authorized_key(line: str) -> KeyInfo | None:
    """The key of one authorized_keys line (options before the type are allowed)."""
    fields = line.strip().split()
    for i, word in enumerate(fields):
        if KEY_TYPES.match(word) and i + 1 < len(fields):
            try:
                blob = base64.b64decode(fields[i + 1], validate=True)
            except (binascii.Error, ValueError):
                return None
            digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            return KeyInfo(word, " ".join(fields[i + 2:]), f"SHA256:{digest}")
    return None


@dataclass(frozen=True)
class Content:
    """What fluxtui keeps of a file between changes. `items` are lines (text, crontab), key
    descriptions (authorized_keys) or "user:hash-of-entry" (shadow); `size` counts its cost."""

    kind: str
    items: tuple[str, ...]
    size: int


def read_content(kind: str, data: bytes) -> Content:
    text = data.decode("utf-8", errors="surrogateescape")
    lines = text.splitlines()
    if kind == "authorized_keys":
        items: list[str] = []
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            info = parse_authorized_key(line)
            items.append(info.describe() if info else "unparsable line "
                         + hashlib.sha256(line.encode(errors="surrogateescape")).hexdigest()[:12])
        return Content(kind, tuple(items), sum(map(len, items)))
    if kind == "shadow":
        users = []
        for line in lines:
            name = line.split(":", 1)[0]
            digest = hashlib.sha256(line.encode(errors="surrogateescape")).hexdigest()[:16]
            users.append(f"{name}:{digest}")
        return Content(kind, tuple(users), sum(map(len, users)))
    return Content(kind, tuple(lines), len(data))


@dataclass(frozen=True)
class Diff:
    added: tuple[str, ...] = ()  # shown as they are (already redacted)
    removed: tuple[str, ...] = ()
    new_entries: tuple[str, ...] = ()  # crontab lines / keys that were not there before
    unseen: bool = False  # written, then gone before fluxtui could read it

    def lines(self) -> list[str]:
        shown = [f"+ {a}" for a in self.added[:MAX_LINES_SHOWN]]
        shown += [f"- {r}" for r in self.removed[:MAX_LINES_SHOWN]]
        hidden = len(self.added) + len(self.removed) - len(shown)
        if hidden > 0:
            shown.append(f"… {hidden} more lines")
        return shown


def _multiset_diff(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[list[str], list[str]]:
    remaining: dict[str, int] = {}
    for item in old:
        remaining[item] = remaining.get(item, 0) + 1
    added = []
    for item in new:
        if remaining.get(item, 0) > 0:
            remaining[item] -= 1
        else:
            added.append(item)
    removed_counts = dict(remaining)
    removed = []
    for item in old:
        if removed_counts.get(item, 0) > 0:
            removed_counts[item] -= 1
            removed.append(item)
    return added, removed


def _entry(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def diff(kind: str, old: Content | None, new: Content | None) -> Diff:
    """Lines added and removed (old None: a file not seen before, every line is added)."""
    added, removed = _multiset_diff(old.items if old else (), new.items if new else ())
    if kind == "shadow":
        def users(items: list[str]) -> set[str]:
            return {i.rsplit(":", 1)[0] for i in items}
        changed = sorted(users(added) | users(removed))
        return Diff(added=tuple(f"entry of user {visible(u)} changed" for u in changed))
    if kind == "authorized_keys":
        return Diff(tuple(added), tuple(removed), tuple(added))
    shown_added = tuple(redact(a) for a in added)
    shown_removed = tuple(redact(r) for r in removed)
    entries = tuple(redact(a) for a in added if _entry(a)) if kind == "crontab" else ()
    return Diff(shown_added, shown_removed, entries)


@dataclass(frozen=True)
class Writer:
    """Who made a change, read from /proc while the process still existed."""

    pid: int
    key: ProcessKey | None  # None: it was gone before fluxtui could read its start time
    exe: str = ""
    comm: str = ""
    uid: int | None = None
    user: str = ""
    args: tuple[str, ...] = ()
    parent_exe: str = ""
    verified: bool = False
    package_manager: str = ""  # a verified package manager: itself or an ancestor

    def describe(self) -> str:
        who = self.exe or self.comm or "an exited process"
        proof = "verified" if self.verified else "not verified"
        user = f" user {self.user}" if self.user else ""
        return visible(f"{who} (pid {self.pid},{user} {proof})")


@dataclass(frozen=True)
class Change:
    """One change of a persistence place."""

    timestamp: float
    path: str
    place: PersistencePlace
    actions: tuple[str, ...]  # created, written, renamed in, deleted, ...
    writer: Writer
    diff: Diff = field(default_factory=Diff)
    note: str = ""  # e.g. "larger than persistence.content_limit: not compared"


def expected_writer(place: PersistencePlace, writer: Writer) -> str:
    """Why the writer is expected for this place ("" when it is not)."""
    if writer.package_manager:
        return f"package manager {writer.package_manager}"
    if writer.verified and any(fnmatch.fnmatchcase(writer.exe, w) for w in place.writers):
        return f"{writer.exe} is an expected writer"
    return ""


def judge(change: Change, entry_risk: float, expected_risk: float) -> list[Finding]:
    """The findings of one change (the caller applies `rules.disabled` / `exceptions`)."""
    writer = change.writer
    key = writer.key
    if key is None:
        key = ProcessKey(writer.pid, 0)
    place = change.place
    technique = (place.technique, _TECHNIQUE_NAMES.get(place.technique, "Persistence"))
    what = f"{change.path} {'/'.join(change.actions) or 'changed'} by {writer.describe()}"
    extra = {"path": visible(change.path), "actions": list(change.actions),
             "writer": writer.describe(), "lines": change.diff.lines()}
    if change.note:
        extra["note"] = change.note
    found: list[Finding] = []
    why = expected_writer(place, writer)
    if why:
        found.append(Finding(key, RULE_EXPECTED, "Persistence place changed by its expected "
                             "writer", visible(f"{what}: {why}"), expected_risk, technique,
                             Severity.LOW, extra))
    else:
        found.append(Finding(key, RULE_UNEXPECTED, "Persistence place changed by an unexpected "
                             "writer", visible(what), place.risk, technique,
                             _SEVERITY[place.severity], extra))
    if change.diff.unseen and place.kind in ("crontab", "authorized_keys"):
        rule, title = ((RULE_CRON, "New scheduled task entry") if place.kind == "crontab"
                       else (RULE_KEY, "New SSH authorized key"))
        found.append(Finding(key, rule, title, visible(
            f"{change.path} {'/'.join(change.actions)} by {writer.describe()}, gone before its "
            "content could be read"), entry_risk, technique, Severity.MEDIUM, extra))
    if change.diff.new_entries and place.kind == "crontab":
        shown = "; ".join(change.diff.new_entries[:3])
        found.append(Finding(key, RULE_CRON, "New scheduled task entry",
                             visible(f"new entry in {change.path} by {writer.describe()}: "
                                     f"{shown}"), entry_risk, technique, Severity.MEDIUM,
                             {**extra, "entries": list(change.diff.new_entries[:10])}))
    if change.diff.new_entries and place.kind == "authorized_keys":
        shown = "; ".join(change.diff.new_entries[:3])
        found.append(Finding(key, RULE_KEY, "New SSH authorized key",
                             visible(f"new key in {change.path} by {writer.describe()}: "
                                     f"{shown}"), entry_risk, technique, Severity.MEDIUM,
                             {**extra, "keys": list(change.diff.new_entries[:10])}))
    return found


_TECHNIQUE_NAMES = {
    "T1098.004": "Account Manipulation: SSH Authorized Keys",
    "T1546.004": "Event Triggered Execution: Unix Shell Configuration Modification",
    "T1546": "Event Triggered Execution",
    "T1053.003": "Scheduled Task/Job: Cron",
    "T1053.002": "Scheduled Task/Job: At",
    "T1543.002": "Create or Modify System Process: Systemd Service",
    "T1136.001": "Create Account: Local Account",
    "T1098": "Account Manipulation",
    "T1548.003": "Abuse Elevation Control Mechanism: Sudo and Sudo Caching",
    "T1574.006": "Hijack Execution Flow: Dynamic Linker Hijacking",
    "T1556.003": "Modify Authentication Process: Pluggable Authentication Modules",
    "T1037.004": "Boot or Logon Initialization Scripts: RC Scripts",
    "T1486": "Data Encrypted for Impact",
}


def technique_name(technique: str) -> str:
    return _TECHNIQUE_NAMES.get(technique, "Persistence")
