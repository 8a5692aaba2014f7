"""`fluxtui doctor`: which capabilities this machine offers, and how to fix what is missing."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluxtui.config import Config

FAN_CLASS_CONTENT = 0x04
FAN_CLOEXEC = 0x01
NETLINK_SOCK_DIAG = 4


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # an optional capability missing does not fail the doctor


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", True, "running as root")
    return Check("root", False, "not root: eBPF, fanotify and full /proc need it",
                 "sudo fluxtui")


def check_bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return Check("bcc", False, f"not importable: {exc}",
                     "apt-get install python3-bpfcc; in a virtual environment, create it with "
                     "`python3 -m venv --system-site-packages` (make setup links bcc into .venv)")
    return Check("bcc", True, "importable")


def headers_dir() -> Path:
    return Path("/lib/modules") / os.uname().release / "build"


def check_headers() -> Check:
    build = headers_dir()
    if (build / "include").is_dir():
        return Check("kernel headers", True, f"{build} -> {build.resolve()}")
    return Check("kernel headers", False, f"{build} missing",
                 f"apt-get install linux-headers-{os.uname().release} "
                 "(or make setup, which links the distribution's headers)")


def check_tracefs() -> Check:
    try:
        mounted = Path("/sys/kernel/tracing/events/raw_syscalls").is_dir()
    except PermissionError:
        return Check("tracefs", False, "cannot look into /sys/kernel/tracing: needs root",
                     "sudo fluxtui doctor")
    if mounted:
        return Check("tracefs", True, "/sys/kernel/tracing mounted")
    return Check("tracefs", False, "/sys/kernel/tracing not mounted",
                 "mount -t tracefs nodev /sys/kernel/tracing")


def check_btf() -> Check:
    # The syscall collector reads kernel struct offsets from BTF: the installed headers may be
    # older than the running kernel.
    if Path("/sys/kernel/btf/vmlinux").exists():
        return Check("kernel BTF", True, "/sys/kernel/btf/vmlinux present")
    return Check("kernel BTF", False, "/sys/kernel/btf/vmlinux missing",
                 "a kernel built with CONFIG_DEBUG_INFO_BTF=y")


def check_syscall_capture(config: Config) -> Check:
    """eBPF's prerequisites; not required when the audit fallback may stand in (the "syscall
    collector" check then says whether it can)."""
    from fluxtui.collectors.syscalls import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return Check("syscall capture", True, "every prerequisite present")
    return Check("syscall capture", False, f"eBPF: {reason}", "see the checks above",
                 required=config.syscalls.collector == "ebpf")


def check_syscall_collector(config: Config) -> Check:
    """Which syscall collector `syscalls.collector` would run here, and why."""
    from fluxtui.collectors.audit_state import plan
    from fluxtui.collectors.syscalls import unavailable_reason

    sc = config.syscalls
    name = "syscall collector"
    if not sc.enabled:
        return Check(name, True, "none: disabled in the configuration (syscalls.enabled: false)")
    ebpf = None if sc.collector == "audit" else unavailable_reason()
    if sc.collector != "audit" and ebpf is None:
        extra = "" if sc.collector == "ebpf" else " (the audit fallback only if it fails to load)"
        return Check(name, True, f"eBPF, syscalls.collector: {sc.collector}{extra}")
    if sc.collector == "ebpf":
        return Check(name, False, f"none: eBPF cannot run ({ebpf})",
                     "see the checks above, or syscalls.collector: auto to fall back to audit")
    audit, how = plan(sc.audit_enable)
    if audit is None:
        why = "" if ebpf is None else f"; eBPF cannot run: {ebpf}"
        return Check(name, True, f"audit fallback (syscalls.collector: {sc.collector}{why}): "
                     f"reads {how}; per-process syscall counts need eBPF")
    fix = "sudo fluxtui"
    if "disabled" in audit:
        fix = "auditctl -e 1, or let fluxtui turn audit on: syscalls.audit_enable: true"
    elif "locked" in audit:
        fix = "audit rules are locked until reboot; boot without the rule `-e 2`"
    elif "CONFIG_AUDIT" in audit or "x86_64" in audit:
        fix = "eBPF (see the checks above): the audit fallback cannot run on this kernel"
    if not audit.startswith("audit fallback"):
        audit = f"audit fallback: {audit}"
    detail = f"none: {audit}" if ebpf is None else f"none: eBPF: {ebpf}; {audit}"
    return Check(name, False, detail, fix)


def check_bpf_load() -> Check:
    if os.geteuid() != 0:
        return Check("BPF load", False, "needs root", "sudo fluxtui doctor")
    try:
        from bcc import BPF
    except ImportError:
        return Check("BPF load", False, "bcc not importable", "see bcc above")
    try:
        program = BPF(text="int probe(void *ctx) { return 0; }")
        program.load_func("probe", BPF.TRACEPOINT)
        program.cleanup()
    except Exception as exc:
        return Check("BPF load", False, f"compile/load failed: {exc}",
                     "check kernel headers and tracefs above")
    return Check("BPF load", True, "compiled and loaded a tracepoint program")


def check_fanotify() -> Check:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            return Check("fanotify permission events", False, "needs root (CAP_SYS_ADMIN)",
                         "sudo fluxtui")
        return Check("fanotify permission events", False,
                     f"fanotify_init failed: {os.strerror(err)}",
                     "a kernel with CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y")
    os.close(fd)
    return Check("fanotify permission events", True, "FAN_CLASS_CONTENT group created")


def check_sock_diag() -> Check:
    from fluxtui.collectors.sock_diag import DestroyWatch, SockDiag

    try:
        diag = SockDiag()
    except OSError as exc:
        return Check("netlink sock_diag", False, f"cannot open NETLINK_SOCK_DIAG: {exc.strerror}",
                     "a kernel with CONFIG_INET_DIAG")
    try:
        entries, errors = diag.dump_all()
    finally:
        diag.close()
    if errors:
        failed = ", ".join(f"{query}: {why}" for query, why in sorted(errors.items()))
        return Check("netlink sock_diag", False, f"some queries failed ({failed})",
                     "modprobe inet_diag tcp_diag udp_diag")
    try:
        DestroyWatch().close()
        closes = "close notifications available"
    except OSError as exc:
        closes = f"no close notifications ({exc.strerror}): short-lived sockets may be missed"
    return Check("netlink sock_diag", True,
                 f"TCP and UDP over IPv4 and IPv6 answered ({len(entries)} sockets); {closes}")


def check_journald() -> Check:
    if Path("/run/systemd/journal/socket").exists():
        return Check("journald", True, "/run/systemd/journal/socket present")
    return Check("journald", False, "no systemd journal running: audit goes to SQLite and the "
                 "JSON stream only", "run under systemd to also log to the journal",
                 required=False)


# Checks that read the configuration get it from run_doctor.
NEEDS_CONFIG: tuple[Callable[[Config], Check], ...] = (check_syscall_capture,
                                                       check_syscall_collector)
CHECKS: list[Callable[..., Check]] = [
    check_root, check_bcc, check_headers, check_tracefs, check_btf, check_bpf_load,
    check_syscall_capture, check_syscall_collector, check_fanotify,
    check_sock_diag, check_journald,
]


def run_check(check: Callable[[], Check]) -> Check:
    """One check; an error it did not foresee is reported as its result, so that every check
    is printed (as a non-root user, much of /sys and /proc is closed)."""
    try:
        return check()
    except Exception as exc:
        name = check.__name__.removeprefix("check_").replace("_", " ")
        why = "needs root" if isinstance(exc, PermissionError) else "failed"
        return Check(name, False, f"{why}: {type(exc).__name__}: {exc}",
                     "sudo fluxtui doctor" if isinstance(exc, PermissionError) else "")


def _bound(check: Callable[..., Check], config: Config) -> Callable[[], Check]:
    if check not in NEEDS_CONFIG:
        return check

    def run() -> Check:
        return check(config)

    run.__name__ = check.__name__
    return run


def run_doctor(config: Config) -> int:
    print(f"fluxtui doctor (config: {config.source})")
    results = [run_check(_bound(check, config)) for check in CHECKS]
    width = max(len(r.name) for r in results)
    for result in results:
        mark = "ok     " if result.ok else "MISSING" if result.required else "absent "
        print(f"  {mark} {result.name:<{width}}  {result.detail}")
        if not result.ok and result.fix:
            print(f"          {'':<{width}}  fix: {result.fix}")
    return 0 if all(r.ok or not r.required for r in results) else 1
