"""What the connections capability hands out: the socket table view (`ConnectionsView`, in
`Snapshot.views["connections"]`) and connection events on the bus (`ConnectionEvent`, with its
ECS document). Nothing here imports textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from fluxtui.collectors.sock_diag import SocketEntry
from fluxtui.collectors.socket_owners import Owner
from fluxtui.ecs import iso_time


class SocketRow(NamedTuple):
    entry: SocketEntry
    owners: tuple[Owner, ...] | None  # () held by no process; None unknown (no permission)


@dataclass(frozen=True)
class ConnectionsView:
    """What `tick.set_view("connections", ...)` holds."""

    timestamp: float  # of the query
    rows: tuple[SocketRow, ...]
    poll_interval: float  # seconds between the last two queries, measured
    query_ms: float  # duration of the last query including ownership
    notes: tuple[str, ...]  # limits and unavailable parts, for the user
    unreadable_processes: int  # processes whose sockets' owners are unknown


@dataclass(frozen=True)
class ConnectionEvent:
    """A socket opened, closed or started listening. In ECS, `source` is the local end and
    `destination` the remote end."""

    timestamp: float
    action: Literal["opened", "closed", "listening"]
    entry: SocketEntry
    owners: tuple[Owner, ...] | None
    short_lived: bool = False  # opened and closed between two queries: seen only at close
    observed_by: str = "query"  # "query" (sock_diag dump) or "close-notification"

    @property
    def owner(self) -> Owner | None:
        return self.owners[0] if self.owners else None

    def to_ecs(self) -> dict[str, Any]:
        e = self.entry
        types = {"opened": ["connection", "start"], "closed": ["connection", "end"],
                 "listening": ["start"]}[self.action]
        doc: dict[str, Any] = {
            "@timestamp": iso_time(self.timestamp),
            "event": {"kind": "event", "module": "fluxtui", "dataset": "fluxtui.connections",
                      "category": ["network"], "type": types,
                      "action": {"opened": "connection-opened", "closed": "connection-closed",
                                 "listening": "port-listening"}[self.action]},
            "source": {"ip": e.local_addr, "port": e.local_port},
            "network": {"transport": e.proto, "type": f"ipv{e.family}",
                        "iana_number": "6" if e.proto == "tcp" else "17"},
            "fluxtui": {"connection": {
                "state": e.state, "inode": e.inode, "cookie": e.cookie,
                "owner": _owner_status(self.owners),
                "owners": [{"pid": o.pid, "name": o.name} for o in self.owners or ()],
                "bytes_sent": e.bytes_sent, "bytes_received": e.bytes_received,
                "rtt_ms": None if e.rtt_us is None else e.rtt_us / 1000,
                "short_lived": self.short_lived, "observed_by": self.observed_by,
            }},
        }
        if e.has_peer:
            doc["destination"] = {"ip": e.remote_addr, "port": e.remote_port}
        owner = self.owner
        if owner is not None:
            doc["process"] = {"pid": owner.pid, "name": owner.name}
        if e.uid is not None:
            doc["user"] = {"id": str(e.uid)}
        return doc


def _owner_status(owners: tuple[Owner, ...] | None) -> str:
    if owners is None:
        return "unknown"
    return "known" if owners else "none"
