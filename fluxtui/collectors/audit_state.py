"""What the audit subsystem's state allows the audit fallback to do, read without changing
anything: for the collector's start and for `fluxtui doctor`. Nothing here imports textual.
"""

from __future__ import annotations

import os

from fluxtui.collectors.audit_netlink import AuditSocket, AuditStatus
from fluxtui.collectors.audit_rules import arch_tables


def refusal_reason(status: AuditStatus, allow_enable: bool) -> str | None:
    """Why the audit fallback must not run with this audit state, None when it may."""
    if status.enabled == 2:
        return ("audit fallback refused: audit rules are locked (enabled 2, auditctl -e 2) until "
                "reboot, so fluxtui cannot add its rules")
    if status.enabled == 0 and not allow_enable:
        return ("audit fallback refused: audit is disabled (enabled 0); enable it (auditctl -e 1) "
                "or allow fluxtui to (syscalls.audit_enable: true)")
    return None


def unavailable_reason(allow_enable: bool = False) -> str | None:
    """Why the audit collector cannot run here, checked without changing anything (for `fluxtui
    doctor`); None when it can."""
    if arch_tables() is None:
        return f"no syscall numbers for {os.uname().machine} (x86_64 only)"
    if os.geteuid() != 0:
        return "needs root (CAP_AUDIT_CONTROL)"
    try:
        sock = AuditSocket()
    except OSError as exc:
        return f"no audit netlink socket ({exc.strerror}): a kernel built without CONFIG_AUDIT"
    try:
        status = sock.status()
    except OSError as exc:
        return f"audit status unreadable: {exc}"
    finally:
        sock.close()
    return refusal_reason(status, allow_enable)


def plan(allow_enable: bool = False) -> tuple[str | None, str]:
    """(why the audit fallback cannot run or None, how it would read records)."""
    reason = unavailable_reason(allow_enable)
    if reason is not None:
        return reason, ""
    sock = AuditSocket()
    try:
        status = sock.status()
    finally:
        sock.close()
    if status.pid:
        how = (f"beside the audit daemon (pid {status.pid}), from its read-only multicast "
               "group: its log grows by fluxtui's records")
    else:
        how = "as the audit daemon (no other runs), until fluxtui exits"
    if status.enabled == 0:
        how += "; turns audit on (syscalls.audit_enable) and off again at exit"
    return None, how
