"""The sock_diag decoder on fixed bytes, laid out as linux/inet_diag.h and linux/tcp.h define them,
and the ECS form of connection events. No kernel needed."""

from __future__ import annotations

import socket
import struct

import pytest

from fluxtui.capabilities.connections import ConnectionEvent
from fluxtui.collectors.connections import (
    NLMSGHDR,
    SOCK_DIAG_BY_FAMILY,
    DiagError,
    SocketEntry,
    build_request,
    canonical_ip,
    decode_message,
    ipv4_mapped,
    iter_messages,
)
from fluxtui.collectors.socket_owners import Owner


def diag_msg(family: int, state: int, sport: int, dport: int, src: bytes, dst: bytes,
             cookie: int, uid: int, inode: int, attrs: bytes = b"") -> bytes:
    """An inet_diag_msg, field by field as in linux/inet_diag.h."""
    body = struct.pack("=BBBB", family, state, 0, 0)
    body += struct.pack(">HH", sport, dport)  # network byte order
    body += src.ljust(16, b"\0") + dst.ljust(16, b"\0")
    body += struct.pack("=I", 0)  # idiag_if
    body += struct.pack("=II", cookie & 0xFFFFFFFF, cookie >> 32)
    body += struct.pack("=IIIII", 0, 3, 4, uid, inode)  # expires, rqueue, wqueue, uid, inode
    assert len(body) == 72
    return body + attrs


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def tcp_info(rtt_us: int, acked: int, received: int, size: int = 232) -> bytes:
    info = bytearray(size)
    struct.pack_into("=I", info, 68, rtt_us)
    if size >= 136:
        struct.pack_into("=QQ", info, 120, acked, received)
    return bytes(info)


def test_ipv4_tcp_with_tcp_info() -> None:
    raw = diag_msg(socket.AF_INET, 1, 40000, 443, bytes([10, 0, 0, 7]), bytes([192, 0, 2, 1]),
                   cookie=(7 << 32) | 9, uid=1000, inode=123456,
                   attrs=attr(2, tcp_info(1500, 1_000_001, 42)))
    entry = decode_message(raw, socket.IPPROTO_TCP)
    assert entry == SocketEntry(
        proto="tcp", family=4, state="ESTAB", local_addr="10.0.0.7", local_port=40000,
        remote_addr="192.0.2.1", remote_port=443, uid=1000, inode=123456, cookie=(7 << 32) | 9,
        recv_q=3, send_q=4, rtt_us=1500, bytes_sent=1_000_001, bytes_received=42)
    assert not entry.listening and entry.has_peer


def test_ipv6_and_ipv4_mapped_addresses() -> None:
    loopback6 = bytes(15) + b"\x01"
    mapped = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    entry = decode_message(diag_msg(socket.AF_INET6, 2, 51000, 8080, loopback6, mapped, 5, 0, 9),
                           socket.IPPROTO_TCP)
    assert entry.family == 6 and entry.state == "SYN-SENT"
    assert entry.local_addr == "::1"
    assert entry.remote_addr == "::ffff:127.0.0.1"  # shown as the kernel has it
    assert ipv4_mapped(entry.remote_addr) == "127.0.0.1"
    assert canonical_ip(entry.remote_addr) == "127.0.0.1"
    assert ipv4_mapped("::1") is None and ipv4_mapped("127.0.0.1") is None
    assert entry.rtt_us is None and entry.bytes_sent is None  # no tcp_info attribute


def test_ipv6_address_byte_order() -> None:
    # 2001:db8::1:2 in network order: the decoder must not swap 32-bit words.
    addr = bytes.fromhex("20010db8000000000000000000010002")
    entry = decode_message(diag_msg(socket.AF_INET6, 10, 22, 0, addr, bytes(16), 1, 0, 77),
                           socket.IPPROTO_TCP)
    assert entry.local_addr == "2001:db8::1:2"
    assert entry.remote_addr == "::" and entry.remote_port == 0
    assert entry.state == "LISTEN" and entry.listening


def test_udp_states_and_no_byte_counters() -> None:
    unconnected = decode_message(diag_msg(socket.AF_INET, 7, 53, 0, bytes([127, 0, 0, 53]),
                                          bytes(4), 2, 0, 88), socket.IPPROTO_UDP)
    assert unconnected.proto == "udp" and unconnected.state == "UNCONN"
    assert unconnected.listening and unconnected.bytes_sent is None
    connected = decode_message(diag_msg(socket.AF_INET, 1, 5000, 53, bytes([127, 0, 0, 1]),
                                        bytes([127, 0, 0, 53]), 3, 0, 89), socket.IPPROTO_UDP)
    assert connected.state == "ESTAB" and not connected.listening


def test_short_tcp_info_from_an_older_kernel() -> None:
    raw = diag_msg(socket.AF_INET, 1, 1, 2, bytes(4), bytes(4), 1, 0, 1,
                   attrs=attr(2, tcp_info(800, 0, 0, size=104)))
    entry = decode_message(raw, socket.IPPROTO_TCP)
    assert entry.rtt_us == 800
    assert entry.bytes_sent is None and entry.bytes_received is None  # absent, not zero


def test_protocol_from_attribute_in_close_notifications() -> None:
    raw = diag_msg(socket.AF_INET, 7, 33866, 53563, bytes([127, 0, 0, 1]),
                   bytes([127, 0, 0, 1]), 11, 0, 0, attrs=attr(10, b"\x11"))
    assert decode_message(raw, None).proto == "udp"


def test_request_layout() -> None:
    raw = build_request(socket.AF_INET6, socket.IPPROTO_TCP, seq=7)
    length, kind, flags, seq, pid = NLMSGHDR.unpack_from(raw)
    assert (length, kind, flags, seq, pid) == (72, SOCK_DIAG_BY_FAMILY, 0x301, 7, 0)
    family, proto, ext, pad, states = struct.unpack_from("=BBBBI", raw, 16)
    assert (family, proto, ext, pad, states) == (10, 6, 1 << 1, 0, 0xFFFFFFFF)
    assert raw[24:] == bytes(48)  # no socket-id filter
    udp = build_request(socket.AF_INET, socket.IPPROTO_UDP, seq=1)
    assert udp[18] == 0  # no tcp_info requested for UDP


def test_truncated_message_is_an_error() -> None:
    header = NLMSGHDR.pack(200, SOCK_DIAG_BY_FAMILY, 0, 1, 0)
    with pytest.raises(DiagError, match="truncated"):
        list(iter_messages(header + bytes(40)))


def test_event_to_ecs() -> None:
    entry = SocketEntry("tcp", 6, "ESTAB", "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 8080,
                        0, 99, 5, 0, 0, 120, 10, 20)
    event = ConnectionEvent(1_800_000_000.25, "opened", entry, (Owner(42, 1000, "curl"),))
    doc = event.to_ecs()
    assert doc["@timestamp"] == "2027-01-15T08:00:00.250Z"
    assert doc["event"]["category"] == ["network"]
    assert doc["event"]["type"] == ["connection", "start"]
    assert doc["source"] == {"ip": "::ffff:127.0.0.1", "port": 40000}
    assert doc["destination"] == {"ip": "::ffff:127.0.0.1", "port": 8080}
    assert doc["network"]["transport"] == "tcp" and doc["network"]["type"] == "ipv6"
    assert doc["process"] == {"pid": 42, "name": "curl"}
    assert doc["fluxtui"]["connection"]["rtt_ms"] == 0.12

    unknown = ConnectionEvent(1.0, "closed", entry, None, short_lived=True).to_ecs()
    assert "process" not in unknown
    assert unknown["fluxtui"]["connection"]["owner"] == "unknown"
    assert unknown["event"]["type"] == ["connection", "end"]
    listener = entry._replace(state="LISTEN", remote_addr="::", remote_port=0)
    doc = ConnectionEvent(1.0, "listening", listener, ()).to_ecs()
    assert "destination" not in doc and doc["fluxtui"]["connection"]["owner"] == "none"
