"""The connections capability: every TCP/UDP socket with its owning processes, connection events,
per-process connection counts and TCP byte rates, and network detections.

A thread of its own ("fluxtui-connections") does the kernel work so the engine tick stays quick:
- every `poll_interval` (never more than a fifth of its time: with many sockets the interval
  grows) it reads the kernel's TCP/UDP counters (collectors/socket_counters.py) and, when they
  moved, a socket closed, or `idle_listing_interval` passed, dumps sock_diag; it refreshes socket
  ownership (swept once a second even when nothing was listed) and diffs the table against the
  previous one: new sockets -> "opened"/"listening" events, vanished ones -> "closed". An
  unconnected UDP socket is a client's (a DNS lookup with sendto) or a service's; which one is
  told by how long it stays: still unconnected in UDP_LISTEN_LISTINGS listings in a row, it is
  "listening" (whatever its port), and one that goes before that is not reported (every poll
  lists while one is being counted);
- in between it reads the kernel's close notifications (sock_diag destroy groups), which report
  a socket's end at once with its final byte counters, including sockets opened and closed
  between two queries ("short_lived": their owner was never observed, it is left unknown);
- with root and bcc it drains the connect tracer (collectors/connect_trace.py): every TCP connect
  attempt with its pid, which is what the port-scan/burst/beacon rules see. Without the tracer
  they see the outgoing connections the queries and close notifications caught.

`on_tick` only takes what the thread prepared: the table (`tick.set_view("connections",
ConnectionsView)`), per-process columns, and the detections (alerts + risk).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections import deque
from typing import Any, ClassVar, NamedTuple

from fluxtui.bus import EventBus
from fluxtui.collectors.connect_trace import (
    ConnectAttempt,
    ConnectOutcome,
    ConnectTracer,
    TracerUnavailable,
)
from fluxtui.collectors.sock_diag import (
    CONNECTED_STATES,
    DestroyWatch,
    SockDiag,
    SocketEntry,
    canonical_ip,
)
from fluxtui.collectors.socket_counters import SocketCounters
from fluxtui.collectors.socket_owners import Owner, SocketOwners
from fluxtui.component import RISK_INPUTS, Channel, TickContext
from fluxtui.config import NetworkConfig, RulesConfig
from fluxtui.connection_views import (
    ConnectionEvent,
    ConnectionsView,
    SocketRow,
)
from fluxtui.detection.network_rules import Detection, NetRules, Observation
from fluxtui.detection.syscall_rules import RuleFilter, Subject
from fluxtui.events import ComponentState, ComponentStatus, ProcessKey

__all__ = ["ConnectionEvent", "ConnectionsComponent", "ConnectionsView", "SocketRow"]

log = logging.getLogger(__name__)

MAX_POLL_SHARE = 0.2  # the thread sleeps at least 4x as long as a query took
TRACER_DRAIN_S = 0.1  # ring buffer drained at most this often, when the kernel says it has news
RECENTLY_CLOSED = 65536  # cookies already reported closed (TIME-WAIT keeps the cookie)
UDP_LISTEN_LISTINGS = 3  # an unconnected UDP socket in this many listings is a listener
MAX_PENDING_DETECTIONS = 10000  # detections waiting for the next tick; beyond: dropped, counted
MAX_OPEN_ATTEMPTS = 65536  # traced attempts waiting for their outcome


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The ports the kernel picks for sockets bound to port 0 (a client's, not a service's)."""
    try:
        with open(path, encoding="ascii") as f:
            low, high = (int(x) for x in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # the kernel's default

UDP_BYTES_NOTE = ("UDP: sock_diag has no per-socket byte counters, so sent/received and the "
                  "process net rates count TCP only")
POLL_NOTE = ("Sockets are listed every {interval:.2f} s; one opened and closed between two "
             "listings appears only when it closes (kernel close notification), with its owner "
             "unknown")
POLL_NOTE_NO_CLOSE = ("Sockets are listed every {interval:.2f} s; one opened and closed between "
                      "two listings is not seen")
POLL_NOTE_GATED = ("Sockets are listed every {poll:.2f} s while the kernel's TCP/UDP counters "
                   "move or a socket closes, else every {idle:.2f} s (a queue length an "
                   "application's read shrank, or a bound UDP socket connecting, moves no "
                   "counter); one opened and closed between two listings appears only when it "
                   "closes (kernel close notification), with its owner unknown")
CLOSING_STATES = frozenset({"TIME-WAIT", "UNCONN"})


class _Shared(NamedTuple):
    """What one query hands to the next tick."""

    view: ConnectionsView
    counts: dict[ProcessKey, int]  # sockets per process that holds at least one
    readable: frozenset[ProcessKey]  # processes whose fds were read (the others: unknown)
    tcp_keys: frozenset[ProcessKey]  # processes holding at least one TCP socket


class ConnectionsComponent:
    name = "connections"
    produces: ClassVar[tuple[Channel[Any], ...]] = (RISK_INPUTS,)
    consumes: ClassVar[tuple[Channel[Any], ...]] = ()
    stop_timeout = 10.0  # seconds stop() waits for the thread

    def __init__(self, config: NetworkConfig, proc: str = "/proc",
                 rules: RulesConfig | None = None) -> None:
        self.config = config
        self._filter = RuleFilter(rules or RulesConfig())
        self._ephemeral = ephemeral_range()
        self._open_attempts: dict[int, Observation] = {}  # socket address -> its attempt
        self._proc = proc
        self._bus: EventBus | None = None
        self._diag: SockDiag | None = None
        self._destroy: DestroyWatch | None = None
        self._tracer: ConnectTracer | None = None
        self._owners = SocketOwners(proc)
        self._rules = NetRules(config)
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the tracer is set up and a first listing done
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._unavailable = ""
        self._notes: dict[str, str] = {}  # topic -> limit or unavailable part
        # Worker state (only the worker thread touches it).
        self._table: dict[int, SocketRow] = {}  # cookie -> row
        self._table_cut = False  # a close notification took a row out since the last view
        self._closed_cookies: deque[int] = deque(maxlen=RECENTLY_CLOSED)
        self._closed_set: set[int] = set()
        self._udp_pending: dict[int, int] = {}  # cookie -> listings seen unconnected, unreported
        self._listening_ports: set[tuple[str, int]] = set()  # (proto, port) of the last listing
        self._counters: dict[int, tuple[int, int]] = {}  # cookie -> (sent, received)
        # cookie -> the processes that last held it: after close() a socket lingers orphaned
        # (inode 0) in FIN-WAIT/TIME-WAIT, and its close event still names who had it.
        self._last_owners: dict[int, tuple[Owner, ...]] = {}
        self._first_query_done = False
        self._last_query_at: float | None = None  # monotonic, of the last listing
        self._interval = 0.0  # between the last two listings
        # The listing gate (collectors/socket_counters.py): the kernel's counters read just
        # before the last listing, when it was, and what came since that calls for another.
        self._clock = time.monotonic
        self._net_counters: SocketCounters | None = None
        self._listed_counters: bytes | None = None
        self._listed_at: float | None = None
        self._closes_since_listing = False
        self._lost_seen = 0  # the close notifications' lost count at the last listing
        self._entries: list[SocketEntry] = []  # the last listing
        self._inodes: list[int] = []
        self._owners_seen: tuple[int, int] = (-1, -1)  # (generation, denied) of the last rows
        self.listings = 0  # sock_diag listings since start
        self.quiet_polls = 0  # polls that found the counters unchanged and did not list
        self._event_budget = (0, 0)  # (second, events published in it)
        # Handed to on_tick under the lock.
        self._lock = threading.Lock()
        self._shared: _Shared | None = None
        self._annotated_from: _Shared | None = None  # the query whose columns are set
        self._bytes: dict[ProcessKey, list[int]] = {}  # key -> [sent, received] since last tick
        # (monotonic of first, of last query) since last tick
        self._bytes_span: tuple[float | None, float | None] = (None, None)
        self._detections: deque[Detection] = deque(maxlen=MAX_PENDING_DETECTIONS)
        self._detections_dropped = 0  # oldest pending detections dropped by the bound
        self._suppressed = 0
        self._rates: dict[ProcessKey, tuple[float, float]] = {}
        self._poll_ms = 0.0
        # The engine's processes as of its last tick (pids): spares the owner sweep a listing of
        # /proc. Replaced whole by on_tick when they changed, read by the worker.
        self._tick_pids: list[int] | None = None
        self._connecting: set[int] = set()  # pids the tracer saw connect since the last query

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        self._bus = bus
        try:
            self._diag = SockDiag()
        except OSError as exc:
            self._unavailable = f"netlink sock_diag socket: {exc.strerror or exc}"
            return
        try:
            self._destroy = DestroyWatch()
        except OSError as exc:
            self._notes["close"] = (f"kernel close notifications unavailable ({exc.strerror}): "
                                    "closes are seen by the periodic listing only")
        else:  # closes are told: unchanged counters can spare a listing (_quiet)
            counters = SocketCounters()
            if counters.available:
                self._net_counters = counters
        if not self.config.connect_trace:
            self._notes["tracer"] = ("connect tracing off (network.connect_trace): detections "
                                     "see only connections a listing or close catches")
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="fluxtui-connections",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout)
            if self._thread.is_alive():
                # Closing what the thread still uses could make it read a reused fd; it is a
                # daemon thread, so leaving it (and its sockets) to process exit is safe.
                log.warning("connections thread did not stop within %g s; its sockets stay open",
                            self.stop_timeout)
                return
        for resource in (self._tracer, self._destroy, self._diag, self._net_counters):
            if resource is not None:
                with contextlib.suppress(Exception):
                    resource.close()
        self._owners.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    @property
    def tracing(self) -> bool:
        """Whether connect attempts are traced (root, bcc, network.connect_trace)."""
        return self._tracer is not None

    def status(self) -> ComponentStatus:
        if self._unavailable:
            return ComponentStatus(self.name, ComponentState.UNAVAILABLE, self._unavailable)
        if self._stop.is_set():
            return ComponentStatus(self.name, ComponentState.STOPPED)
        if self._thread is not None and not self._thread.is_alive():
            return ComponentStatus(self.name, ComponentState.UNAVAILABLE,
                                   "connections thread ended (see the log)")
        shared = self._shared
        count = 0 if shared is None else len(shared.view.rows)
        detail = f"{count} sockets, query {self._poll_ms:.0f} ms"
        if self._tracer is not None and self._tracer.dropped:
            detail += f", connect events dropped {self._tracer.dropped}"
        if self._destroy is not None and self._destroy.lost:
            detail += f", close notifications lost {self._destroy.lost}+"
        if self._suppressed:
            detail += f", events suppressed {self._suppressed}"
        if self._detections_dropped:
            detail += f", detections dropped {self._detections_dropped}"
        return ComponentStatus(self.name, ComponentState.RUNNING, detail=detail)

    # --- the worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        if self.config.connect_trace:
            try:
                self._tracer = ConnectTracer()
            except TracerUnavailable as exc:
                self._notes["tracer"] = (f"{exc}: detections see only connections a listing or "
                                         "close notification catches")
        # poll, not select: the guard raises the fd limit, and select fails on fds > 1023.
        # Two sets: the ring buffer of the connect tracer is left out for TRACER_DRAIN_S after a
        # drain (the kernel wakes the reader once per batch; this bounds the drains to 10/s).
        quiet = select.poll()
        quiet.register(self._wake_r, select.POLLIN)
        if self._destroy is not None:
            quiet.register(self._destroy.fileno(), select.POLLIN)
        traced = select.poll()
        traced.register(self._wake_r, select.POLLIN)
        if self._destroy is not None:
            traced.register(self._destroy.fileno(), select.POLLIN)
        if self._tracer is not None:
            traced.register(self._tracer.fileno(), select.POLLIN)
        next_query = next_drain = time.monotonic()
        ready: set[int] = set()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_query:
                started = time.monotonic()
                try:
                    self._query()
                except Exception:
                    log.exception("connections query failed")
                took = time.monotonic() - started
                next_query = started + max(self.config.poll_interval, took / MAX_POLL_SHARE)
                self.ready.set()
            if self._tracer is not None and (self._tracer.fileno() in ready
                                             or now >= next_drain + 1.0):
                self._on_attempts(self._tracer.drain())  # (once a second regardless)
                next_drain = time.monotonic() + TRACER_DRAIN_S
            now = time.monotonic()
            wait = max(0.0, next_query - now)
            poller = quiet
            if self._tracer is not None:
                if now >= next_drain:
                    poller = traced
                else:
                    wait = min(wait, next_drain - now)
            ready = {fd for fd, _ in poller.poll(wait * 1000)}
            if self._destroy is not None and self._destroy.fileno() in ready:
                self._on_destroyed(self._destroy.read())

    def _query(self) -> None:
        assert self._diag is not None
        started = self._clock()
        now = time.time()
        counters = None if self._net_counters is None else self._net_counters.read()
        if self._quiet(counters, started):
            # Nothing the kernel counts moved and no socket closed: the table is the last
            # listing's (see collectors/socket_counters.py). Ownership is still swept (a socket
            # passed on, a process gone) and no byte moved until now.
            self.quiet_polls += 1
            self._owners.refresh(self._inodes, self._tick_pids)
            owners_seen = (self._owners.generation, self._owners.denied)
            if owners_seen == self._owners_seen:
                self._rules.expire(now)
                with self._lock:
                    first, _ = self._bytes_span
                    self._bytes_span = (first if first is not None else started, started)
                return
            entries = self._entries  # the same sockets, other owners: the rows again
        else:
            self.listings += 1
            self._closes_since_listing = False
            self._lost_seen = 0 if self._destroy is None else self._destroy.lost
            entries, errors = self._diag.dump_all()
            self._listed_counters, self._listed_at = counters, started
            self._notes = {k: v for k, v in self._notes.items() if not k.startswith("dump-")}
            for name, error in errors.items():
                self._notes[f"dump-{name}"] = f"{name} sockets not listed: {error}"
            self._entries = entries
            self._inodes = [e.inode for e in entries]
            unknown = self._owners.unknown(self._inodes)
            hints = self._hints([e for e in entries if e.inode in unknown]) if unknown else ()
            self._owners.refresh(self._inodes, self._tick_pids, hints)
            self._connecting = set()
            self._interval = (0.0 if self._last_query_at is None
                              else started - self._last_query_at)
            self._last_query_at = started
        self._owners_seen = (self._owners.generation, self._owners.denied)
        table, same = self._rows(entries)
        previous = self._shared
        if same and previous is not None and not self._udp_pending and not self._table_cut:
            # The listing is the last one's, entry for entry and owner for owner, and no close
            # notification took a socket out of the table since: no socket opened, closed or
            # changed state, no byte moved, the view's rows and the counts are the last ones.
            self._rules.expire(now)
            rows = previous.view.rows
            counts, tcp_keys = previous.counts, previous.tcp_keys
            moved: dict[ProcessKey, list[int]] = {}
        else:
            last_owners = {}
            for cookie, row in table.items():
                if row.owners:
                    last_owners[cookie] = row.owners
                elif cookie in self._last_owners:
                    last_owners[cookie] = self._last_owners[cookie]
            self._last_owners = last_owners
            self._diff(now, table)
            self._rules.expire(now)  # here: NetRules is only ever touched by this thread
            self._table = table
            self._table_cut = False
            moved = self._account_bytes(table, first=not self._first_query_done)
            self._first_query_done = True
            rows = tuple(table.values())
            counts, tcp_keys = self._counts(table)
        finished = self._clock()
        interval = self._interval
        notes = [UDP_BYTES_NOTE, self._poll_note(interval)]
        notes += [self._notes[k] for k in sorted(self._notes)]
        denied = self._owners.denied
        if denied:
            notes.append(f"owner unknown for sockets of {denied} processes whose /proc/PID/fd "
                         "is not readable (run as root)")
        view = ConnectionsView(timestamp=now, rows=rows, poll_interval=interval,
                               query_ms=(finished - started) * 1000, notes=tuple(notes),
                               unreadable_processes=denied)
        with self._lock:  # bytes and the span they cover change together
            self._merge_bytes_locked(moved)
            self._shared = _Shared(view, counts, self._owners.readable(), tcp_keys)
            first, _ = self._bytes_span
            self._bytes_span = (first if first is not None else started, started)
            self._poll_ms = view.query_ms

    def _quiet(self, counters: bytes | None, now: float) -> bool:
        """Whether the socket table is known to be the last listing's: the kernel's TCP/UDP
        counters as they were just before it, no close notification since (nor one lost), no
        unconnected UDP socket being counted towards "listening", and the last listing less
        than idle_listing_interval old (for what no counter shows)."""
        return (counters is not None and counters == self._listed_counters
                and self._listed_at is not None
                and 0 <= now - self._listed_at < self.config.idle_listing_interval
                and not self._closes_since_listing and not self._udp_pending
                and self._destroy is not None and self._destroy.lost == self._lost_seen)

    def _poll_note(self, interval: float) -> str:
        if self._destroy is None:
            return POLL_NOTE_NO_CLOSE.format(interval=interval or self.config.poll_interval)
        if self._net_counters is None:
            return POLL_NOTE.format(interval=interval or self.config.poll_interval)
        return POLL_NOTE_GATED.format(poll=self.config.poll_interval,
                                      idle=self.config.idle_listing_interval)

    def _rows(self, entries: list[SocketEntry]) -> tuple[dict[int, SocketRow], bool]:
        """The table of this listing, and whether it is the last one's: the same entries (the
        collector hands on an unchanged socket as the same object) with the same owners. An
        unchanged row is the last one's object."""
        old = self._table
        owners_of = self._owners.owners
        same = self._first_query_done and len(entries) == len(old)
        table: dict[int, SocketRow] = {}
        for entry in entries:
            owners = owners_of(entry.inode) if entry.inode else ()
            row = old.get(entry.cookie)
            if (row is None or row.entry is not entry
                    or (row.owners is not owners and row.owners != owners)):
                row = SocketRow(entry, owners)
                same = False
            table[entry.cookie] = row
        return table, same

    @staticmethod
    def _counts(table: dict[int, SocketRow]
                ) -> tuple[dict[ProcessKey, int], frozenset[ProcessKey]]:
        """Sockets per process holding at least one, and the processes holding a TCP one."""
        counts: dict[ProcessKey, int] = {}
        tcp_keys: set[ProcessKey] = set()
        for row in table.values():
            for owner in row.owners or ():
                key = owner.key
                counts[key] = counts.get(key, 0) + 1
                if row.entry.proto == "tcp":
                    tcp_keys.add(key)
        return counts, frozenset(tcp_keys)

    def _hints(self, entries: list[SocketEntry]) -> set[int]:
        """Processes likely to hold the new sockets `entries`: those that connected since the
        last listing (the tracer), and the holders of a listener (as of the last listing) on
        the local port of a connection (an accepted one)."""
        hints = set(self._connecting)
        listeners = {(r.entry.proto, r.entry.local_port): r.owners for r in self._table.values()
                     if r.entry.state == "LISTEN" and r.owners}
        if listeners:
            for entry in entries:
                if entry.state != "LISTEN" and entry.has_peer:
                    for owner in listeners.get((entry.proto, entry.local_port)) or ():
                        hints.add(owner.pid)
        return hints

    def _diff(self, now: float, table: dict[int, SocketRow]) -> None:
        old = self._table
        first = not self._first_query_done
        listening_ports = {(r.entry.proto, r.entry.local_port) for r in table.values()
                           if r.entry.state == "LISTEN"}
        self._listening_ports = listening_ports  # for the direction of close notifications
        for cookie, row in table.items():
            entry = row.entry
            if first or cookie in self._closed_set or entry.state == "SYN-RECV":
                # Start-up is the baseline, not news; a SYN-RECV request socket is replaced by a
                # new socket (new cookie) once the handshake completes.
                continue
            before = old.get(cookie)
            seen = self._udp_pending.get(cookie)
            if before is row and seen is None:
                continue  # the last listing's row (same entry, same owners): no news
            if before is not None and seen is None:
                if (entry.proto == "tcp" and entry.state in CLOSING_STATES
                        and before.entry.state in CONNECTED_STATES):
                    self._closed(ConnectionEvent(now, "closed", entry, self._owned_by(cookie,
                                                                                     row),
                                                 direction=self._direction(entry)))
                continue
            udp_unconnected = entry.proto == "udp" and entry.listening
            if self._ephemeral_udp(entry):
                continue  # bound to port 0 (the kernel picked it): a client's, not a listener
            if udp_unconnected:
                seen = (seen or 0) + 1
                if seen < UDP_LISTEN_LISTINGS:
                    self._udp_pending[cookie] = seen
                    continue
            if seen is not None:
                del self._udp_pending[cookie]
            if entry.listening:
                self._publish(ConnectionEvent(now, "listening", entry, row.owners))
                self._new_listener(now, row)
            elif entry.state in CONNECTED_STATES:
                outgoing = (entry.state == "SYN-SENT"
                            or (entry.proto, entry.local_port) not in listening_ports)
                self._publish(ConnectionEvent(now, "opened", entry, row.owners,
                                              direction="outbound" if outgoing else "inbound"))
                if outgoing and (self._tracer is None or entry.proto == "udp"):
                    self._observe(now, row.owners, entry)
            elif entry.has_peer:  # first seen already closed: it opened between two listings
                self._closed(ConnectionEvent(now, "closed", entry, row.owners, short_lived=True,
                                             direction=self._direction(entry)))
                if self._tracer is None and (entry.proto, entry.local_port) not in listening_ports:
                    self._observe(now, row.owners, entry)
            # else: a TCP socket bound but neither listening nor connected yet: no news.
        # A client socket gone before it counted as listening: never reported, so no close either.
        unreported = {c for c in self._udp_pending if c not in table}
        for cookie in unreported:
            del self._udp_pending[cookie]
        for cookie, row in old.items():
            # A TIME-WAIT entry expiring is not news: its connection's close was reported when
            # it happened (or before fluxtui started).
            if (cookie not in table and cookie not in self._closed_set and cookie not in unreported
                    and row.entry.state not in ("SYN-RECV", "TIME-WAIT")
                    and not self._ephemeral_udp(row.entry)):
                self._closed(ConnectionEvent(now, "closed", row.entry,
                                             self._owned_by(cookie, row),
                                             direction=self._direction(row.entry)))
                self._last_owners.pop(cookie, None)

    def _direction(self, entry: SocketEntry) -> str:
        """Who connected: to a port a local listener has (as of the last listing), the remote
        end did."""
        if entry.state == "SYN-SENT":
            return "outbound"
        inbound = (entry.proto, entry.local_port) in self._listening_ports
        return "inbound" if inbound else "outbound"

    def _ephemeral_udp(self, entry: SocketEntry) -> bool:
        """An unconnected UDP socket on a port of the ephemeral range: never reported."""
        return (entry.proto == "udp" and entry.listening
                and self._ephemeral[0] <= entry.local_port <= self._ephemeral[1])

    def _owned_by(self, cookie: int, row: SocketRow) -> tuple[Owner, ...] | None:
        """Who holds the socket, or who held it last before closing it."""
        return row.owners or self._last_owners.get(cookie, row.owners)

    def _new_listener(self, now: float, row: SocketRow) -> None:
        entry = row.entry
        owners = row.owners or ()
        if not owners:
            found = self._rules.listener(now, None, None, "unknown", entry.proto,
                                         entry.local_addr, entry.local_port)
        else:
            found = []
            for owner in owners:
                found += self._rules.listener(now, owner.key, owner.pid, owner.name,
                                              entry.proto, entry.local_addr, entry.local_port)
        self._add_detections(found)

    def _closed(self, event: ConnectionEvent) -> None:
        cookie = event.entry.cookie
        if len(self._closed_cookies) == self._closed_cookies.maxlen:
            self._closed_set.discard(self._closed_cookies[0])
        self._closed_cookies.append(cookie)
        self._closed_set.add(cookie)
        self._publish(event)

    def _on_destroyed(self, entries: list[SocketEntry]) -> None:
        now = time.time()
        if entries:
            self._closes_since_listing = True
        for entry in entries:
            cookie = entry.cookie
            if cookie in self._closed_set:
                continue
            row = self._table.pop(cookie, None)
            if row is not None:
                self._table_cut = True
            if self._udp_pending.pop(cookie, None) is not None:
                continue  # never reported opened or listening: its close is no news either
            if row is not None:
                final = row.entry._replace(state=entry.state, bytes_sent=entry.bytes_sent,
                                           bytes_received=entry.bytes_received,
                                           rtt_us=entry.rtt_us)
                owners = self._owned_by(cookie, row)
                self._last_owners.pop(cookie, None)
                self._account_final(cookie, final, owners)
                self._closed(ConnectionEvent(now, "closed", final, owners,
                                             observed_by="close-notification",
                                             direction=self._direction(final)))
            elif entry.has_peer:
                # Opened and closed between two listings: the file is gone, so its owner was
                # never observed and stays unknown.
                self._closed(ConnectionEvent(now, "closed", entry, None, short_lived=True,
                                             observed_by="close-notification",
                                             direction=self._direction(entry)))
                if self._tracer is None and entry.proto == "tcp":
                    self._observe(now, None, entry)
            # else: a socket that never had a peer (failed connect, unbound): nothing to report.

    def _on_attempts(self, attempts: list[ConnectAttempt | ConnectOutcome]) -> None:
        for a in attempts:
            if isinstance(a, ConnectOutcome):
                obs = self._open_attempts.pop(a.sock, None)
                if obs is not None:
                    self._add_detections(self._rules.outcome(obs._replace(timestamp=a.timestamp),
                                                             a.established))
                continue
            self._connecting.add(a.pid)
            key = None if a.start_ticks is None else ProcessKey(a.pid, a.start_ticks)
            obs = Observation(a.timestamp, key, a.pid, a.comm, "tcp", canonical_ip(a.remote_addr),
                              a.remote_port, uid=a.uid, ppid=a.ppid, exe=a.exe,
                              parent_start_ticks=a.parent_start_ticks)
            if a.sock:
                if len(self._open_attempts) >= MAX_OPEN_ATTEMPTS:
                    self._open_attempts.pop(next(iter(self._open_attempts)))
                self._open_attempts[a.sock] = obs
            self._add_detections(self._rules.connection(obs))

    def _observe(self, now: float, owners: tuple[Owner, ...] | None, entry: SocketEntry) -> None:
        owner = owners[0] if owners else None
        obs = Observation(now, None if owner is None else owner.key,
                          None if owner is None else owner.pid,
                          "unknown" if owner is None else owner.name, entry.proto,
                          canonical_ip(entry.remote_addr), entry.remote_port, uid=entry.uid)
        self._add_detections(self._rules.connection(obs))

    def _add_detections(self, found: list[Detection]) -> None:
        if found:
            with self._lock:
                room = MAX_PENDING_DETECTIONS - len(self._detections)
                self._detections_dropped += max(0, len(found) - room)
                self._detections.extend(found)

    def _publish(self, event: ConnectionEvent) -> None:
        second = int(event.timestamp)
        window, used = self._event_budget
        if window != second:
            window, used = second, 0
        if used >= self.config.max_events_per_s:
            self._suppressed += 1
            return
        self._event_budget = (window, used + 1)
        if self._bus is not None:
            self._bus.publish(event)

    # --- TCP byte counters -------------------------------------------------------------------

    def _account_bytes(self, table: dict[int, SocketRow], first: bool
                       ) -> dict[ProcessKey, list[int]]:
        """Bytes moved since the previous query, per holding process. A socket not in the
        previous query was created after it, so its whole count is new; at the first query the
        counts are lifetime totals and only become the baseline."""
        counters: dict[int, tuple[int, int]] = {}
        moved: dict[ProcessKey, list[int]] = {}
        for cookie, row in table.items():
            entry = row.entry
            if entry.bytes_sent is None or entry.bytes_received is None:
                continue
            now_counts = (entry.bytes_sent, entry.bytes_received)
            counters[cookie] = now_counts
            if first or not row.owners:
                continue
            before = self._counters.get(cookie, (0, 0))
            sent = now_counts[0] - before[0]
            received = now_counts[1] - before[1]
            if sent or received:
                for owner in row.owners:
                    slot = moved.setdefault(owner.key, [0, 0])
                    slot[0] += sent
                    slot[1] += received
        self._counters = counters
        return moved

    def _account_final(self, cookie: int, final: SocketEntry,
                       owners: tuple[Owner, ...] | None) -> None:
        before = self._counters.pop(cookie, None)
        if (before is None or not owners or final.bytes_sent is None
                or final.bytes_received is None):
            return
        sent, received = final.bytes_sent - before[0], final.bytes_received - before[1]
        with self._lock:
            self._merge_bytes_locked({o.key: [sent, received] for o in owners})

    def _merge_bytes_locked(self, moved: dict[ProcessKey, list[int]]) -> None:
        for key, (sent, received) in moved.items():
            slot = self._bytes.setdefault(key, [0, 0])
            slot[0] += sent
            slot[1] += received

    # --- the engine tick ---------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        pids = self._tick_pids
        if self._proc == "/proc" and (pids is None or tick.appeared
                                      or len(pids) != len(tick.processes)):
            # The engine lists the same /proc. Nobody new and as many as before: nobody gone,
            # the same list object (the owner sweep then skips comparing it with its own).
            self._tick_pids = [key.pid for key in tick.processes]
        moved: dict[ProcessKey, list[int]] = {}
        with self._lock:
            shared = self._shared
            detections = list(self._detections)
            self._detections.clear()
            first, last = self._bytes_span
            span = None if first is None or last is None else last - first
            if last is not None:  # a query since the last tick: close this accounting period
                moved, self._bytes = self._bytes, {}
                self._bytes_span = (last, None)
        for detection in detections:
            alert = detection.alert
            subject = Subject(executable=str(alert.extra.get("executable", "")),
                              uid=alert.extra.get("uid") if isinstance(alert.extra.get("uid"),
                                                                       int) else None)
            if not self._filter.allows(alert.rule_id, subject):
                continue
            tick.raise_alert(alert)
            if alert.key is not None and detection.points > 0:
                # One rule counts once per process (several listeners: once, not per port).
                tick.add_risk(alert.key, detection.points, alert.reasons[0],
                              (alert.technique_id, alert.technique_name), group=alert.rule_id)
        if shared is None:
            return
        rates_before, before = self._rates, self._annotated_from
        if span:  # a new query since the last tick: rates over the queries' own interval
            self._rates = {key: (sent / span, received / span)
                           for key, (sent, received) in moved.items()}
        # Columns persist (TickContext.annotate): set for new processes, and for those a new
        # query or new rates changed, not for the thousands that hold no socket.
        todo: set[ProcessKey] = set(tick.appeared)
        if before is None or shared is not before:
            todo.update(shared.counts, shared.tcp_keys)
            if before is not None:
                todo.update(before.counts, before.tcp_keys)
                if shared.readable is not before.readable:  # the same while none came or went
                    todo.update(shared.readable ^ before.readable)
            else:
                todo.update(shared.readable)
        if self._rates is not rates_before:
            todo.update(self._rates, rates_before)
        self._annotated_from = shared
        for key in todo:
            if key not in tick.processes:
                continue
            if key not in shared.readable:  # fds not readable: unknown, left empty
                tick.annotate(key, connections=None, net_tx_per_s=None, net_rx_per_s=None)
                continue
            sent_received = self._rates.get(key)
            if sent_received is None and key in shared.tcp_keys:
                sent_received = (0.0, 0.0)
            sent, received = sent_received or (None, None)
            tick.annotate(key, connections=shared.counts.get(key, 0), net_tx_per_s=sent,
                          net_rx_per_s=received)
        tick.set_view(self.name, shared.view)

