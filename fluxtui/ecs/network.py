"""Sockets in ECS: connection events (opened, closed, listening) and the full listing of the
socket table written at start and every `stream.connection_listing_interval` seconds.

`source` is the end that opened the connection and `destination` the end it reached, as ECS
has them: for an inbound connection (to a local listener) the remote end is the source. The
direction comes from the connections capability (who connected); unknown, both ends are given
under `fluxtui.connection.local/remote` only and `network.direction` says "unknown".
"""

from __future__ import annotations

from typing import Any

from fluxtui.collectors.sock_diag import SocketEntry
from fluxtui.collectors.socket_owners import Owner
from fluxtui.connection_views import ConnectionEvent, ConnectionsView, SocketRow
from fluxtui.ecs.common import entity_id, iso_time

CONNECTIONS_DATASET = "fluxtui.connections"
LISTING_DATASET = "fluxtui.connection_listing"
_ACTIONS = {"opened": "connection-opened", "closed": "connection-closed",
            "listening": "port-listening"}
_TYPES = {"opened": ["connection", "start"], "closed": ["connection", "end"],
          "listening": ["start"]}


def _ip(addr: str) -> str:
    """ECS ip fields take an IPv4-mapped address as the IPv4 address it is."""
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


def socket_fields(e: SocketEntry) -> dict[str, Any]:
    """fluxtui's record of a socket (the replay rebuilds the entry from this)."""
    return {
        "proto": e.proto, "family": e.family, "state": e.state,
        "local": {"ip": e.local_addr, "port": e.local_port},
        "remote": {"ip": e.remote_addr, "port": e.remote_port},
        "uid": e.uid, "inode": e.inode, "cookie": str(e.cookie),
        "recv_q": e.recv_q, "send_q": e.send_q,
        "rtt_us": e.rtt_us, "bytes_sent": e.bytes_sent, "bytes_received": e.bytes_received,
    }


def owners_fields(owners: tuple[Owner, ...] | None) -> dict[str, Any]:
    status = "unknown" if owners is None else ("known" if owners else "none")
    return {"owner": status,
            "owners": [{"pid": o.pid, "start_ticks": o.start_ticks, "name": o.name}
                       for o in owners or ()]}


def ends(e: SocketEntry, direction: str) -> dict[str, Any]:
    """`source`/`destination` by who connected, `network.*`."""
    local = {"ip": _ip(e.local_addr), "port": e.local_port}
    remote = {"ip": _ip(e.remote_addr), "port": e.remote_port}
    network: dict[str, Any] = {"transport": e.proto, "type": f"ipv{e.family}",
                               "iana_number": "6" if e.proto == "tcp" else "17"}
    out: dict[str, Any] = {"network": network}
    if not e.has_peer:  # a listener: its own address is where connections go
        out["destination"] = local
        return out
    network["direction"] = direction
    if direction == "inbound":
        out["source"], out["destination"] = remote, local
    elif direction == "outbound":
        out["source"], out["destination"] = local, remote
    return out


def connection_document(event: ConnectionEvent) -> dict[str, Any]:
    e = event.entry
    doc: dict[str, Any] = {
        "@timestamp": iso_time(event.timestamp),
        "event": {"kind": "event", "dataset": CONNECTIONS_DATASET,
                  "category": ["network"], "type": _TYPES[event.action],
                  "action": _ACTIONS[event.action]},
        **ends(e, event.direction),
        "fluxtui": {"connection": {
            **socket_fields(e), **owners_fields(event.owners),
            "event": event.action, "direction": event.direction,
            "short_lived": event.short_lived, "observed_by": event.observed_by,
        }},
    }
    owner = event.owner
    if owner is not None:
        doc["process"] = {"pid": owner.pid, "name": owner.name,
                          "entity_id": entity_id(owner.pid, owner.start_ticks)}
    if e.uid is not None:
        doc["user"] = {"id": str(e.uid)}
    return doc


def row_direction(e: SocketEntry, listening: set[tuple[str, int]]) -> str:
    """Who opened a connection in a listing: to a local listener's port, the remote end did."""
    if not e.has_peer:
        return "unknown"
    if e.state == "SYN-SENT":
        return "outbound"
    return "inbound" if (e.proto, e.local_port) in listening else "outbound"


def listing_document(view: ConnectionsView, tick: int) -> dict[str, Any]:
    """Every socket of the table (sockets older than fluxtui included) with its owners: with
    the events in between, a reader knows the full socket state at any time."""
    listening = {(r.entry.proto, r.entry.local_port) for r in view.rows
                 if r.entry.state == "LISTEN"}
    return {
        "@timestamp": iso_time(view.timestamp),
        "event": {"kind": "state", "dataset": LISTING_DATASET, "category": ["network"],
                  "type": ["info"]},
        "fluxtui": {"tick": tick, "connections": {
            "count": len(view.rows),
            "poll_interval_s": view.poll_interval,
            "query_ms": view.query_ms,
            "notes": list(view.notes),
            "unreadable_processes": view.unreadable_processes,
            "sockets": [_listed(row, listening) for row in view.rows],
        }},
    }


def _listed(row: SocketRow, listening: set[tuple[str, int]]) -> dict[str, Any]:
    return {**socket_fields(row.entry), **owners_fields(row.owners),
            "direction": row_direction(row.entry, listening)}
