"""A BPF ring buffer (BPF_MAP_TYPE_RINGBUF) read by mmap, with no bcc in the process.

Layout (kernel/bpf/ringbuf.c): the first page, mapped writable, holds the consumer position;
the next page holds the producer position and is followed by the data area. The kernel offers
the data area twice in a row so a wrapping record reads as one piece, but it maps every page of
a mapping at once (each counts in the resident size), so only one copy is mapped here and a
wrapping record is read in two pieces. Each record has an 8-byte header (never split: records
are 8-byte aligned): its length with a BUSY bit (still being written) and a DISCARD bit, then
the payload, padded to 8 bytes. epoll on the map's fd says when records are there. Nothing here
imports textual.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8


class RingBuffer:
    """Reader of one ring buffer map fd (not owned: the map's owner closes it)."""

    def __init__(self, fd: int, data_size: int) -> None:
        if data_size <= 0 or data_size & (data_size - 1):
            raise ValueError(f"ring buffer size {data_size} is not a power of two")
        page = mmap.PAGESIZE
        self.fd = fd
        self.size = data_size
        self._mask = data_size - 1
        self._consumer = mmap.mmap(fd, page, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(fd, page + data_size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=page)
        self._page = page
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)
        # Since start: records and bytes read (headers and padding included), and the most
        # bytes found waiting at the start of a read (how close the buffer came to full).
        self.records_read = 0
        self.bytes_read = 0
        self.peak_pending = 0

    def pending_bytes(self) -> int:
        prod = struct.unpack_from("<Q", self._data, 0)[0]
        cons = struct.unpack_from("<Q", self._consumer, 0)[0]
        return int(prod - cons)

    def consume(self, callback: Callable[[bytes], object], limit: int | None = None) -> int:
        """Calls `callback` with each committed record's bytes (a copy), oldest first; returns
        how many. A record still being written ends the pass."""
        data, page, mask = self._data, self._page, self._mask
        start = cons = struct.unpack_from("<Q", self._consumer, 0)[0]
        self.peak_pending = max(self.peak_pending, struct.unpack_from("<Q", data, 0)[0] - cons)
        done = 0
        while limit is None or done < limit:
            prod = struct.unpack_from("<Q", data, 0)[0]
            if cons >= prod:
                break
            at = cons & mask
            length = struct.unpack_from("<I", data, page + at)[0]
            if length & BUSY:
                break
            size = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                first = (at + HEADER) & mask  # the payload may start past the end
                end = first + size
                if end <= self.size:
                    callback(data[page + first:page + end])
                else:
                    callback(data[page + first:page + self.size]
                             + data[page:page + end - self.size])
                done += 1
            cons += (size + HEADER + 7) & ~7
            # The record was copied before this store (x86's ordering; no barrier on others)
            struct.pack_into("<Q", self._consumer, 0, cons)
        self.records_read += done
        self.bytes_read += cons - start
        return done

    def wake_also_on(self, other: RingBuffer) -> None:
        """`wait` returns when `other` has records too."""
        self._epoll.register(other.fd, select.EPOLLIN)

    def wake_also_on_fd(self, fd: int) -> None:
        """`wait` returns when `fd` is readable too (e.g. an eventfd written to stop a reader)."""
        self._epoll.register(fd, select.EPOLLIN)

    def wait(self, timeout_s: float) -> bool:
        """True when the kernel signalled new records within `timeout_s` seconds."""
        return bool(self._epoll.poll(timeout_s))

    def close(self) -> None:
        self._epoll.close()
        self._consumer.close()
        self._data.close()
