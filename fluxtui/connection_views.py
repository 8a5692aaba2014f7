"""What the connections capability hands out: the socket table view (`ConnectionsView`, in
`Snapshot.views["connections"]`) and connection events on the bus (`ConnectionEvent`, with its
ECS document in `fluxtui.ecs.network`). Nothing here imports textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from fluxtui.collectors.sock_diag import SocketEntry
from fluxtui.collectors.socket_owners import Owner


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
    """A socket opened, closed or started listening (its ECS document: `fluxtui.ecs.network`)."""

    timestamp: float
    action: Literal["opened", "closed", "listening"]
    entry: SocketEntry
    owners: tuple[Owner, ...] | None
    short_lived: bool = False  # opened and closed between two queries: seen only at close
    observed_by: str = "query"  # "query" (sock_diag dump) or "close-notification"
    # who connected: "inbound" (the remote end, to a local listener), "outbound", "unknown"
    direction: str = "unknown"

    @property
    def owner(self) -> Owner | None:
        return self.owners[0] if self.owners else None
