"""Who may read which credential group: the policy, and the rules file of "always" decisions.

Order of evaluation for one open (`evaluate`):
1. an "always deny" rule for this executable identity + group denies;
2. a process with an injection flag is never allowed by a rule: it goes to the prompt;
3. a temporary allowance (this process's lifetime, 5 minutes, this session) or an "always
   allow" rule for this executable identity + group allows;
4. a program listed for the group in the catalogue allows only when it is verified (package-owned,
   content matches the package database, system directory);
5. anything else is undecided: the prompt, or the default action without one.

An executable's identity is its path and sha256: an upgraded binary is asked about again.
The rules file is YAML written atomically (write, fsync, rename), root-owned and 0600. A file
that is corrupt or writable by other users is refused with one message and never overwritten.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from fluxtui.events import ProcessKey
from fluxtui.guard.catalogue import Group
from fluxtui.guard.identity import ExeVerification, ProcessInfo
from fluxtui.policy_files import UnsafeFileError, atomic_write, read_policy_file

Action = Literal["allow", "deny"]
Scope = Literal["once", "always", "5min", "process", "session"]
SCOPES: tuple[Scope, ...] = ("once", "always", "5min", "process", "session")
FIVE_MINUTES = 300.0
RULES_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("id", "action", "group", "executable", "sha256", "created", "decided_by")


@dataclass(frozen=True)
class SavedRule:
    """An "always" decision, scoped to an executable identity and a credential group."""

    id: str
    action: Action
    group: str
    executable: str
    sha256: str
    created: str  # ISO 8601, UTC
    decided_by: str  # e.g. "key A (allow always)"

    @staticmethod
    def make_id(executable: str, sha256: str, group: str) -> str:
        return hashlib.sha256(f"{executable}\0{sha256}\0{group}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TempRule:
    kind: Literal["5min", "process", "session"]
    group: str
    executable: str
    sha256: str
    key: ProcessKey | None  # for "process"
    expires: float  # time.monotonic(); math.inf when it ends with the session or the process


@dataclass(frozen=True)
class Verdict:
    allow: bool | None  # None: nobody decided (prompt, or default action)
    decided_by: str  # "rule", "catalogue", ...
    reason: str
    valid_until: float = math.inf  # monotonic; a cached verdict is re-evaluated after it


class RulesFileError(Exception):
    """The rules file cannot be used; the message is meant for the user."""


def _validate(data: Any, path: Path) -> list[SavedRule]:
    def bad(why: str) -> RulesFileError:
        return RulesFileError(f"{path}: refused, {why}; the file was left untouched "
                              f"(fix it or move it away to start with no rules)")

    if not isinstance(data, dict) or set(data) != {"version", "rules"}:
        raise bad("expected a mapping with 'version' and 'rules'")
    if data["version"] != RULES_VERSION:
        raise bad(f"unsupported version {data['version']!r} (expected {RULES_VERSION})")
    if not isinstance(data["rules"], list):
        raise bad("'rules' is not a list")
    rules: list[SavedRule] = []
    for index, item in enumerate(data["rules"]):
        where = f"rule {index + 1}"
        if not isinstance(item, dict) or set(item) != set(_FIELDS):
            raise bad(f"{where}: expected exactly the keys {', '.join(_FIELDS)}")
        if not all(isinstance(item[k], str) for k in _FIELDS):
            raise bad(f"{where}: every value must be a string")
        if item["action"] not in ("allow", "deny"):
            raise bad(f"{where}: action must be allow or deny, got {item['action']!r}")
        if not _SHA256.fullmatch(item["sha256"]):
            raise bad(f"{where}: sha256 must be 64 lowercase hex digits")
        if not item["executable"].startswith("/"):
            raise bad(f"{where}: executable must be a full path")
        rules.append(SavedRule(**{k: item[k] for k in _FIELDS}))
    return rules


class RulesFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.refused: str | None = None  # once set, the file is never written

    def load(self) -> list[SavedRule]:
        try:
            try:
                raw = read_policy_file(self.path)
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise RulesFileError(f"{self.path}: cannot read: {exc.strerror}") from None
            except UnsafeFileError as exc:
                raise RulesFileError(f"{exc}; the file was left untouched") from None
            try:
                data = yaml.safe_load(raw.decode("utf-8"))
            except (UnicodeDecodeError, yaml.YAMLError) as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 1}" if mark else ""
                raise RulesFileError(
                    f"{self.path}: refused, not valid YAML{where}; the file was left untouched "
                    f"(fix it or move it away to start with no rules)") from None
            return _validate(data, self.path)
        except RulesFileError as exc:
            self.refused = str(exc)
            raise

    def save(self, rules: list[SavedRule]) -> None:
        if self.refused:
            raise RulesFileError(self.refused)
        if self.path.exists():
            try:
                read_policy_file(self.path)  # never overwrite a file that was refused
            except UnsafeFileError as exc:
                raise RulesFileError(f"{exc}; the file was left untouched") from None
        body = yaml.safe_dump({"version": RULES_VERSION, "rules": [asdict(r) for r in rules]},
                              sort_keys=False, allow_unicode=True)
        header = ("# fluxtui guard: \"always\" decisions, one per executable identity (path +\n"
                  "# sha256) and credential group. Written by fluxtui; read back at start.\n")
        atomic_write(self.path, (header + body).encode("utf-8"), mode=0o600)


class RuleBook:
    """Saved and temporary rules, shared by the responder (reads), the UI (list, delete) and
    the saver thread. `version` changes whenever the rules do, so cached verdicts can expire."""

    def __init__(self, rules_file: RulesFile) -> None:
        self.file = rules_file
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saved: dict[tuple[str, str, str], SavedRule] = {}
        self._temp: list[TempRule] = []
        self.version = 0
        self.error: str | None = None  # the last problem with the rules file

    def load(self) -> None:
        try:
            rules = self.file.load()
        except RulesFileError as exc:
            self.error = str(exc)
            rules = []
        with self._lock:
            self._saved = {(r.executable, r.sha256, r.group): r for r in rules}
            self.version += 1

    def saved(self) -> list[SavedRule]:
        with self._lock:
            return sorted(self._saved.values(), key=lambda r: (r.group, r.executable))

    def temporary(self) -> list[TempRule]:
        with self._lock:
            return list(self._temp)

    def add_saved(self, rule: SavedRule) -> None:
        with self._lock:
            self._saved[(rule.executable, rule.sha256, rule.group)] = rule
            self.version += 1

    def delete(self, rule_id: str) -> bool:
        with self._lock:
            for key, rule in list(self._saved.items()):
                if rule.id == rule_id:
                    del self._saved[key]
                    self.version += 1
                    return True
        return False

    def persist(self) -> bool:
        """Write the saved rules to the file; False (and `error` set) when refused or failed.
        Serialised, so the file always holds one complete set."""
        with self._save_lock:
            rules = self.saved()
            try:
                self.file.save(rules)
            except (RulesFileError, OSError) as exc:
                self.error = str(exc) if isinstance(exc, RulesFileError) else \
                    f"{self.file.path}: cannot write: {exc}"
                return False
            self.error = None
            return True

    def add_temp(self, rule: TempRule) -> None:
        with self._lock:
            self._temp.append(rule)
            self.version += 1

    def expire(self, now: float, alive: set[ProcessKey] | None = None) -> None:
        """Drop temporary rules that ran out, and process rules of processes that are gone."""
        with self._lock:
            keep = [r for r in self._temp if r.expires > now
                    and (alive is None or r.key is None or r.key in alive)]
            if len(keep) != len(self._temp):
                self._temp = keep
                self.version += 1

    def lookup(self, group: str, executable: str, sha256: str, key: ProcessKey, now: float
               ) -> tuple[SavedRule | None, TempRule | None]:
        with self._lock:
            saved = self._saved.get((executable, sha256, group))
            # A "process" answer is for the program the prompt showed: after an exec (same pid
            # and start time, another executable) it no longer applies.
            temp = next((r for r in self._temp if r.group == group and r.expires > now
                         and r.executable == executable and r.sha256 == sha256
                         and (r.kind != "process" or r.key == key)), None)
        return saved, temp


def evaluate(group: Group, proc: ProcessInfo, verification: ExeVerification,
             flags: tuple[str, ...], book: RuleBook, now: float) -> Verdict:
    """`now`: the responder's clock (monotonic), the one temporary rules expire on."""
    saved, temp = book.lookup(group.name, verification.path, verification.sha256, proc.key, now)
    if saved is not None and saved.action == "deny":
        return Verdict(False, "rule", f"always deny rule {saved.id}")
    if flags:
        return Verdict(None, "flags", "no rule allows a flagged process: " + ", ".join(flags))
    if temp is not None:
        labels = {"5min": "allowed for 5 minutes", "process": "allowed for this process",
                  "session": "allowed for this session"}
        return Verdict(True, "rule", labels[temp.kind], valid_until=temp.expires)
    if saved is not None:
        return Verdict(True, "rule", f"always allow rule {saved.id}")
    program = group.allowed_program(proc.exe, proc.uid, proc.euid, proc.parent_exe,
                                    proc.cmdline)
    if program is not None:
        if verification.verified:
            return Verdict(True, "catalogue", f"{group.name} allows {program.describe()}")
        return Verdict(None, "unverified",
                       f"listed for {group.name} but {verification.summary()}")
    return Verdict(None, "no-rule", f"no rule allows {proc.exe or proc.comm} to read "
                                    f"{group.name}")
