"""What every stream document shares: the declared ECS version, the stream format version, times,
the host's identity (from os-release), and the envelope added when a document is written."""

from __future__ import annotations

import functools
import math
import os
import platform
import socket
import time
from datetime import UTC, datetime
from typing import Any

# The ECS release the documents follow; tests/data/ecs_flat-<version>.yml.gz holds its field
# definitions and the validation test checks every document against them.
ECS_VERSION = "8.17.0"
# The layout of fluxtui's own fields (`fluxtui.*`) and of the stream (which documents make a
# tick). `fluxtui replay` reads recordings of this version and refuses newer ones.
STREAM_VERSION = 1
MODULE = "fluxtui"
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


_SECONDS: dict[int, str] = {}  # whole second -> its "YYYY-MM-DDTHH:MM:SS" (a few kept)


def iso_time(epoch: float) -> str:
    """UTC, milliseconds, Z: what datetime's isoformat gives (microseconds rounded half to even,
    then cut to milliseconds), at a fraction of its cost: every document carries two or more,
    and under a burst of process exits the stream writes thousands a second."""
    if not 0 <= epoch < 253402300800:  # years 1970-9999; else the slow, general way
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")
    frac, whole = math.modf(epoch)
    micro = round(frac * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 64:
            _SECONDS.clear()
        prefix = _SECONDS[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{micro // 1000:03d}Z"


def parse_time(text: str) -> float:
    """Epoch seconds of an `iso_time` string (or any ISO 8601 time with a zone)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_os_release(paths: tuple[str, ...] = OS_RELEASE) -> dict[str, str]:
    """KEY=value pairs of os-release(5); {} when no file is readable."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        out = {}
        for line in lines:
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                out[key.strip()] = value
        return out
    return {}


def os_fields(release: dict[str, str], kernel: str) -> dict[str, Any]:
    """ECS `host.os`: platform is the distribution id (debian, ubuntu, rhel, ...), family the
    first of ID_LIKE (or the id itself), type always linux."""
    distro = release.get("ID", "")
    like = release.get("ID_LIKE", "").split()
    out: dict[str, Any] = {"type": "linux", "kernel": kernel}
    if distro:
        out["platform"] = distro
        out["family"] = like[0] if like else distro
    for key, name in (("name", "NAME"), ("version", "VERSION_ID"), ("full", "PRETTY_NAME")):
        if release.get(name):
            out[key] = release[name]
    return out


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


@functools.cache
def host_fields() -> dict[str, Any]:
    """ECS `host` identity of this machine (read once per process)."""
    uname = os.uname()
    name = socket.gethostname()
    fields: dict[str, Any] = {
        "name": name,
        "hostname": name,
        "architecture": platform.machine(),
        "os": os_fields(read_os_release(), uname.release),
    }
    boot = boot_id()
    if boot:
        fields["boot"] = {"id": boot}
    return fields


@functools.cache
def agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("fluxtui")
    except PackageNotFoundError:
        return "unknown"


def envelope(doc: dict[str, Any], host: dict[str, Any], written: float,
             created: str | None = None) -> dict[str, Any]:
    """The fields every document carries: `ecs.version`, `host`, `agent`, the stream version,
    `event.created` (when it was written: its lag behind `@timestamp` shows back-pressure) and
    `@timestamp` for a document that lacks the time of its own (none of ours do). `created`:
    `iso_time(written)` when the caller has it already (one batch of documents)."""
    created = iso_time(written) if created is None else created
    out = dict(doc)
    out.setdefault("@timestamp", created)
    out["ecs"] = {"version": ECS_VERSION}
    out["host"] = {**host, **out.get("host", {})}
    out["agent"] = {"type": MODULE, "name": MODULE, "version": agent_version()}
    event = dict(out.get("event", {}))
    event.setdefault("module", MODULE)
    event["created"] = created
    out["event"] = event
    own = dict(out.get("fluxtui", {}))
    own["stream_version"] = STREAM_VERSION
    out["fluxtui"] = own
    return out


def entity_id(pid: int, start_ticks: int) -> str:
    """`process.entity_id`: unique across PID reuse (start time) and reboots (boot id) on this
    host; the same process has the same id in every document."""
    boot = host_fields().get("boot", {}).get("id", "")
    return f"{boot[:8]}-{pid}-{start_ticks}" if boot else f"{pid}-{start_ticks}"
