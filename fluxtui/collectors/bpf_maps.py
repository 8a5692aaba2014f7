"""BPF maps through the bpf() system call (ctypes), with no bcc in the process.

The dashboard holds the file descriptors of maps a helper process loaded (bpf_helper.py) and
reads and writes them here: lookup, update, the batch lookup-and-delete that empties a hash map
in one call, and per-CPU values summed over the possible CPUs. A map's type, key and value
sizes and its locked memory come from /proc/self/fdinfo. Nothing here imports textual.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import platform
from dataclasses import dataclass
from pathlib import Path

_BPF_NR = {"x86_64": 321, "aarch64": 280}
BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_GET_NEXT_KEY = 1, 2, 4
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_ANY = 0
POP_BATCH = 8192  # entries a batch call of pop_all_packed takes at most
PERCPU_TYPES = frozenset({5, 6, 10})  # percpu_hash, percpu_array, lru_percpu_hash

_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long


class _ElemAttr(ct.Structure):
    _fields_ = [("map_fd", ct.c_uint32), ("pad", ct.c_uint32), ("key", ct.c_uint64),
                ("value", ct.c_uint64), ("flags", ct.c_uint64)]


class _BatchAttr(ct.Structure):
    _fields_ = [("in_batch", ct.c_uint64), ("out_batch", ct.c_uint64), ("keys", ct.c_uint64),
                ("values", ct.c_uint64), ("count", ct.c_uint32), ("map_fd", ct.c_uint32),
                ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]


def bpf(cmd: int, attr: ct.Structure) -> int:
    """The bpf() system call; raises OSError with the kernel's errno."""
    nr = _BPF_NR.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf() number unknown on {platform.machine()}")
    ret = _libc.syscall(nr, cmd, ct.byref(attr), ct.sizeof(attr))
    if ret < 0:
        err = ct.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many per-CPU slots a per-CPU map's value has ("0-3,5" -> 6 ... the highest + 1)."""
    highest = 0
    for part in Path(path).read_text().strip().split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1


@dataclass(frozen=True)
class MapInfo:
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    memlock: int  # bytes of kernel memory charged to the map


def map_info(fd: int, fdinfo_dir: str = "/proc/self/fdinfo") -> MapInfo:
    fields: dict[str, str] = {}
    for line in Path(f"{fdinfo_dir}/{fd}").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    try:
        return MapInfo(int(fields["map_type"]), int(fields["key_size"]),
                       int(fields["value_size"]), int(fields["max_entries"]),
                       int(fields.get("memlock", "0")))
    except KeyError as exc:
        raise ValueError(f"fd {fd} is not a BPF map (no {exc} in its fdinfo)") from None


class BpfMap:
    """One map by its file descriptor (owned: `close` closes it). Keys and values are bytes of
    the map's sizes; for a per-CPU map a value is every possible CPU's, 8-byte aligned."""

    def __init__(self, fd: int, name: str = "") -> None:
        self.fd = fd
        self.name = name
        self.info = map_info(fd)
        self.percpu = self.info.map_type in PERCPU_TYPES
        self._slot = (self.info.value_size + 7) // 8 * 8
        self.ncpus = possible_cpus() if self.percpu else 1
        self.value_bytes = self._slot * self.ncpus if self.percpu else self.info.value_size
        self._pop_buffers: tuple[ct.Array[ct.c_char], ...] | None = None  # see pop_all_packed

    def _key(self, key: bytes | int) -> ct.Array[ct.c_char]:
        raw = key.to_bytes(self.info.key_size, "little") if isinstance(key, int) else key
        if len(raw) != self.info.key_size:
            raise ValueError(f"map {self.name}: key of {len(raw)} bytes, not {self.info.key_size}")
        return ct.create_string_buffer(raw, len(raw))

    def lookup(self, key: bytes | int) -> bytes | None:
        k = self._key(key)
        v = ct.create_string_buffer(self.value_bytes)
        attr = _ElemAttr(self.fd, 0, ct.addressof(k), ct.addressof(v), 0)
        try:
            bpf(BPF_MAP_LOOKUP_ELEM, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return v.raw

    def update(self, key: bytes | int, value: bytes | int, flags: int = BPF_ANY) -> None:
        k = self._key(key)
        raw = value.to_bytes(self.value_bytes, "little") if isinstance(value, int) else value
        if len(raw) != self.value_bytes:
            raise ValueError(f"map {self.name}: value of {len(raw)} bytes, not "
                             f"{self.value_bytes}")
        v = ct.create_string_buffer(raw, len(raw))
        bpf(BPF_MAP_UPDATE_ELEM, _ElemAttr(self.fd, 0, ct.addressof(k), ct.addressof(v), flags))

    def percpu_u64_sum(self, key: bytes | int) -> int:
        """The sum over CPUs of a per-CPU u64 value (0 for a missing key)."""
        raw = self.lookup(key)
        if raw is None:
            return 0
        return sum(int.from_bytes(raw[i:i + 8], "little")
                   for i in range(0, len(raw), self._slot))

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        size = self.info.key_size
        nxt = ct.create_string_buffer(size)
        prev: ct.Array[ct.c_char] | None = None
        while True:
            attr = _ElemAttr(self.fd, 0, ct.addressof(prev) if prev is not None else 0,
                             ct.addressof(nxt), 0)
            try:
                bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return out
                raise
            out.append(nxt.raw)
            prev = ct.create_string_buffer(nxt.raw, size)

    def pop_all(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value), each deleted as it is read (BPF_MAP_LOOKUP_AND_DELETE_BATCH)."""
        keys, values = self.pop_all_packed()
        size_k, size_v = self.info.key_size, self.value_bytes
        return [(keys[i * size_k:(i + 1) * size_k], values[i * size_v:(i + 1) * size_v])
                for i in range(len(keys) // size_k)]

    def pop_all_packed(self) -> tuple[bytes, bytes]:
        """Every key and value, each deleted as it is read (BPF_MAP_LOOKUP_AND_DELETE_BATCH,
        POP_BATCH entries a call), as two packed byte strings (entry i at i * key size,
        i * value size). One caller at a time per map (its buffers are reused)."""
        size_k, size_v = self.info.key_size, self.value_bytes
        count = max(1, min(self.info.max_entries, POP_BATCH))
        if self._pop_buffers is None:  # made once: zero-filling megabytes each tick cost more
            self._pop_buffers = (ct.create_string_buffer(size_k * count),  # than the call
                                 ct.create_string_buffer(size_v * count),
                                 ct.create_string_buffer(max(size_k, 8)),
                                 ct.create_string_buffer(max(size_k, 8)))
        keys, values, token_in, token_out = self._pop_buffers
        out_keys: list[bytes] = []
        out_values: list[bytes] = []
        first = True
        while True:
            attr = _BatchAttr(0 if first else ct.addressof(token_in), ct.addressof(token_out),
                              ct.addressof(keys), ct.addressof(values), count, self.fd, 0, 0)
            done = False
            try:
                bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                done = True
            n = attr.count
            out_keys.append(ct.string_at(keys, n * size_k))
            out_values.append(ct.string_at(values, n * size_v))
            if done or n == 0:
                return b"".join(out_keys), b"".join(out_values)
            ct.memmove(token_in, token_out, len(token_out))
            first = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
