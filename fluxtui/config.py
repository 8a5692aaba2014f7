"""Load config.yml into typed, frozen dataclasses, with one precise error per bad value.

Each section is a dataclass; a field's type says what is accepted and `field(metadata=...)` may add
`range=(low, high)` for numbers. Unknown keys, wrong types and out-of-range values raise
`ConfigError`, whose message names the file, the key, the line and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fluxtui.policy_files import UnsafeFileError, read_policy_file

SYSTEM_CONFIG = Path("/etc/fluxtui/config.yml")


class ConfigError(Exception):
    """A configuration problem, already phrased for the user."""


def _range(low: float, high: float) -> dict[str, Any]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class GeneralConfig:
    refresh_interval: float = field(default=1.0, metadata=_range(0.1, 60))
    theme: str = "fluxtui-dark"
    history_seconds: int = field(default=300, metadata=_range(10, 3600))
    max_alerts: int = field(default=500, metadata=_range(10, 100000))


@dataclass(frozen=True)
class SyscallConfig:
    enabled: bool = True
    ring_buffer_pages: int = field(default=1024, metadata=_range(1, 65536))  # a power of two
    # Kernel memory for the two count maps; count_map_entries 0: as many entries as fit.
    count_map_memory_mb: int = field(default=24, metadata=_range(1, 4096))
    count_map_entries: int = field(default=0, metadata=_range(0, 16777216))
    count_map_fill_level: float = field(default=0.5, metadata=_range(0.05, 1.0))
    event_queue_limit: int = field(default=50000, metadata=_range(100, 1000000))
    # auto: eBPF where it works, else the audit subsystem (collectors/audit.py)
    collector: Literal["auto", "ebpf", "audit"] = "auto"
    audit_enable: bool = False  # the audit fallback may turn audit on (and off again at exit)


# Base weight of each syscall in a process's risk score (see fluxtui/detection/risk.py).
DEFAULT_BASE_RISK_SCORES: dict[str, float] = {
    "ptrace": 10, "process_vm_readv": 12, "process_vm_writev": 15,
    "setuid": 8, "setgid": 6, "setreuid": 8, "setregid": 6, "setresuid": 8, "setresgid": 6,
    "setfsuid": 6, "setfsgid": 4, "capset": 6,
    "execve": 5, "execveat": 8,
    "mount": 4, "umount2": 3, "pivot_root": 8, "chroot": 6, "unshare": 6, "setns": 6,
    "fsopen": 4, "fsmount": 4, "move_mount": 4, "open_tree": 3, "mount_setattr": 3,
    "open_by_handle_at": 8,
    "openat": 1, "clone": 1, "clone3": 2,
    "bpf": 8, "perf_event_open": 4, "memfd_create": 8, "userfaultfd": 5,
    "kexec_load": 20, "kexec_file_load": 20,
    "init_module": 15, "finit_module": 15, "delete_module": 10,
    "iopl": 10, "ioperm": 10,
}


@dataclass(frozen=True)
class RiskConfig:
    risk_threshold: float = field(default=50.0, metadata=_range(0, 100))
    anomaly_weight: float = field(default=0.3, metadata=_range(0, 1))
    decay_factor: float = field(default=0.9, metadata=_range(0, 1))
    decay_interval: float = field(default=10.0, metadata=_range(0.1, 3600))
    default_risk_score: float = field(default=0.0, metadata=_range(0, 100))
    base_risk_scores: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_BASE_RISK_SCORES), metadata=_range(0, 100))
    exited_retention_s: float = field(default=30.0, metadata=_range(0, 3600))
    propagation_factor: float = field(default=0.5, metadata=_range(0, 1))
    propagation_depth: int = field(default=3, metadata=_range(0, 16))


@dataclass(frozen=True)
class RuleException:
    """A case a detection rule ignores. Every field given must match (globs; empty = any):
    `rule` a rule id ("syscalls.shell_spawn", "network.port_scan", or "*"), `executable` and
    `parent` full executable paths, `user` a user name or uid, `args` the arguments joined by
    spaces (argv[1:])."""

    rule: str = "*"
    executable: str = ""
    parent: str = ""
    user: str = ""
    args: str = ""


# Expected to start shells: the shells themselves, terminals and multiplexers, log-in and
# privilege programs, service managers and schedulers, build tools, version control, package
# managers (maintainer scripts). Each counts only when verified (package-owned, unmodified).
DEFAULT_SHELL_PARENTS = (
    "/usr/bin/bash", "/usr/bin/dash", "/usr/bin/zsh", "/usr/bin/fish", "/usr/bin/ksh93",
    "/usr/bin/mksh", "/usr/bin/tcsh",
    "/usr/bin/tmux", "/usr/bin/screen", "/usr/bin/script", "/usr/bin/xterm",
    "/usr/libexec/gnome-terminal-server", "/usr/bin/konsole", "/usr/bin/kitty",
    "/usr/bin/login", "/usr/sbin/sshd", "/usr/lib/openssh/sshd-session", "/usr/bin/su",
    "/usr/sbin/runuser",
    "/usr/lib/systemd/systemd", "/usr/lib/systemd/systemd-executor", "/usr/sbin/cron",
    "/usr/sbin/atd",
    "/usr/bin/make", "/usr/bin/gmake", "/usr/bin/cmake", "/usr/bin/ninja",
    "/usr/bin/git", "/usr/lib/git-core/git",
    "/usr/bin/dpkg", "/usr/bin/apt", "/usr/bin/apt-get", "/usr/bin/rpm", "/usr/bin/dnf",
)
# Programs that run another program without being its reason: looked through to their parent.
DEFAULT_WRAPPERS = (
    "/usr/bin/timeout", "/usr/bin/env", "/usr/bin/sudo", "/usr/bin/nice", "/usr/bin/nohup",
    "/usr/bin/setsid", "/usr/bin/stdbuf", "/usr/bin/ionice", "/usr/bin/flock",
    "/usr/bin/time", "/usr/bin/chrt", "/usr/bin/taskset",
)
# Sandboxes and service managers that change namespaces as their job.
DEFAULT_SANDBOXES = (
    "/usr/bin/bwrap", "/usr/lib/chromium/chromium", "/opt/google/chrome/chrome",
    "/usr/lib/firefox-esr/firefox-esr", "/usr/lib/firefox/firefox",
    "/usr/lib/systemd/systemd", "/usr/lib/systemd/systemd-executor",
    "/usr/lib/systemd/systemd-nspawn", "/usr/bin/flatpak", "/usr/sbin/runc", "/usr/bin/runc",
    "/usr/bin/crun", "/usr/bin/conmon", "/usr/bin/podman",
    "/usr/bin/containerd-shim-runc-v2", "/usr/bin/newuidmap", "/usr/bin/newgidmap",
    # CNI plugins (containernetworking-plugins): podman runs them to wire a container's
    # network, entering its network namespace.
    *(f"/usr/lib/cni/{name}" for name in (
        "bridge", "tuning", "loopback", "ptp", "macvlan", "ipvlan", "vlan", "host-device",
        "bandwidth", "sbr", "vrf", "portmap", "firewall")),
)


# Container runtimes: what a process does after exec'ing one of these (verified: package-owned,
# unmodified; matched in the kernel by device and inode) and before it execs the container's
# entrypoint is the runtime's set-up, not an alert (fluxtui/detection/runtime_setup.py).
DEFAULT_CONTAINER_RUNTIMES = (
    "/usr/sbin/runc", "/usr/bin/runc", "/usr/bin/crun", "/usr/bin/conmon",
    "/usr/libexec/podman/conmon", "/usr/bin/containerd-shim-runc-v2",
    "/usr/bin/containerd-shim", "/usr/bin/containerd", "/usr/sbin/dockerd", "/usr/bin/dockerd",
    "/usr/bin/podman",
)


@dataclass(frozen=True)
class RulesConfig:
    disabled: list[str] = field(default_factory=list)
    exceptions: list[RuleException] = field(default_factory=list)
    shell_parents: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL_PARENTS))
    wrappers: list[str] = field(default_factory=lambda: list(DEFAULT_WRAPPERS))
    sandboxes: list[str] = field(default_factory=lambda: list(DEFAULT_SANDBOXES))
    container_runtimes: list[str] = field(
        default_factory=lambda: list(DEFAULT_CONTAINER_RUNTIMES))


@dataclass(frozen=True)
class AllowedProgram:
    """A program allowed to read a credential group. `path` is the full executable path (a glob
    such as /usr/lib/postgresql/*/bin/psql is accepted); the other fields narrow it further and
    are ignored when empty: `uids`/`euids` like "0" or "1000-60000" or "0,1000-60000", `parent`
    the full path of the parent's executable, `args` a glob on the arguments joined by spaces,
    `deny_args` Python regular expressions searched in the whole command line (argv[0]
    included) joined by NUL characters: when one is found the program is not allowed (so
    `(?:^|\\0)-F` finds an argument that starts with -F)."""

    path: str = ""
    uids: str = ""
    euids: str = ""
    parent: str = ""
    args: str = ""
    deny_args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CredentialGroup:
    """Named glob patterns (relative to each home, or absolute for system files) and the
    programs allowed to read them. `technique` is the MITRE ATT&CK id reported for an access."""

    name: str = ""
    technique: str = "T1552.001"
    patterns: list[str] = field(default_factory=list)
    allowed: list[AllowedProgram] = field(default_factory=list)


def _group(name: str, technique: str, patterns: list[str],
           programs: list[str | AllowedProgram]) -> CredentialGroup:
    return CredentialGroup(name, technique, patterns,
                           [p if isinstance(p, AllowedProgram) else AllowedProgram(p)
                            for p in programs])


def _short(flags: str, option: str) -> str:
    """A regex finding short option `option` in any argument, alone or after a cluster of
    `flags` (the options that take no value), the way getopt reads it."""
    return f"(?:^|\\0)-[{flags}]*{option}"


# Which programs are listed, and why (config.yml says the same next to each entry): a program
# is listed for a credential only where it reads that credential to use it (authenticate,
# sign) and `deny_args` excludes every form that prints, copies or sends a named file. Where
# no such limit is reliable the program is not listed and its reads are asked about:
# general file readers (git, scp, sftp, rsync, curl, wget, ftp clients, gpg, psql, mysql, the
# cloud and container CLIs), programs whose interface prints the secret (aws configure get,
# kubectl config view --raw, gh auth token, vault print token, git credential fill, rclone
# config show, terraform console's file()), and ssh-add (it sends the private key to whatever
# agent socket SSH_AUTH_SOCK names, which any process of the user can point at its own).
_SSH_NOARG = "1246AaCfGgKkMNnqsTtVvXxYy"  # ssh's options without a value
_SSH = AllowedProgram("/usr/bin/ssh", deny_args=[
    _short(_SSH_NOARG, "F"),  # -F FILE: read as ssh_config, its lines echoed in errors
    _short(_SSH_NOARG, "I"),  # -I: a PKCS#11 library of the caller's choice
    # -o Include (echoes the file), AddKeysToAgent + IdentityAgent (hand the private key to an
    # agent socket of the caller's choice), providers (libraries of the caller's choice).
    _short(_SSH_NOARG, "o") + r"\0?[\s=]*(?i:include|addkeystoagent|identityagent"
    r"|securitykeyprovider|pkcs11provider)"])
_KEYGEN_NOARG = "ABHKLQUXceghiklopquvy"
_KEYGEN = AllowedProgram("/usr/bin/ssh-keygen", deny_args=[
    _short(_KEYGEN_NOARG.replace("i", ""), "i"),  # -i: prints a converted PRIVATE key
    _short(_KEYGEN_NOARG, "[Dw]"),  # -D / -w: load a library of the caller's choice
    # -F / -R / -H treat the file named by -f as known_hosts: print its lines, or rewrite it
    # through a temporary copy under a name that is no credential.
    _short(_KEYGEN_NOARG, "[FR]"), _short(_KEYGEN_NOARG.replace("H", ""), "H"),
    # -p / -c rewrite the key to the path named by -f, looked up again after the prompt: a
    # symlink pointed elsewhere meanwhile receives the private key (unencrypted with -N '').
    _short(_KEYGEN_NOARG, "[cp]")])
_SSHD_NOARG = "46DGQRTdeiqrtV"
_SSHD = [AllowedProgram(path, deny_args=[
    _short(_SSHD_NOARG, "f"),  # -f FILE: read as sshd_config, its lines echoed in errors
    _short(_SSHD_NOARG, "o") + r"\0?[\s=]*(?i:include)"])
    for path in ("/usr/sbin/sshd", "/usr/lib/openssh/sshd-session", "/usr/lib/openssh/sshd-auth")]
_SUDO = AllowedProgram("/usr/bin/sudo", deny_args=[
    "(?:^|/)sudoedit(?:\\0|$)", _short("ABbEHiKklNnPSsVv", "e"), "\\0--edit(?:\\0|=|$)"])
_BROWSER_DENY = [  # a browser told to open, print or serve a file of the caller's choice
    "(?i)file:", "(?i)view-source:", "(?:^|\\0)--?headless", "(?:^|\\0)--?remote-debugging",
    "(?:^|\\0)--?remote-allow", "(?:^|\\0)--?marionette", "(?:^|\\0)--?screenshot",
    "(?:^|\\0)--?dump-dom", "(?:^|\\0)--?print-to-pdf", "(?:^|\\0)--?remote(?:\\0|=|$)"]
_CHROMIUM_DIRS = ["chromium", "google-chrome", "google-chrome-beta", "BraveSoftware/Brave-Browser",
                  "microsoft-edge", "vivaldi"]

# The credential catalogue, relative to each home. Interpreters (python, node, perl, ruby,
# shells) are never listed: a script run by one would inherit the allowance.
DEFAULT_GROUPS: tuple[CredentialGroup, ...] = (
    _group("ssh-keys", "T1552.004",
           [".ssh/id_*", ".ssh/*.pem", ".ssh/*.key", ".ssh/*_rsa", ".ssh/*_ecdsa",
            ".ssh/*_ed25519", ".ssh/*_dsa", ".ssh/*_sk"], [_SSH, _KEYGEN]),
    _group("aws", "T1552.001",
           [".aws/credentials", ".aws/config", ".aws/sso/cache/*.json", ".aws/cli/cache/*.json"],
           []),
    # GnuPG 2.1+: only the agent reads private keys, for any client of the user: `gpg
    # --export-secret-keys` has it read and hand out an unprotected key (guard2's attack), so
    # it is asked about (answer "this process" once for a session's agent).
    _group("gnupg", "T1552.004", [".gnupg/private-keys-v1.d/*", ".gnupg/secring.gpg"], []),
    _group("kube", "T1552.001", [".kube/config", ".kube/*.kubeconfig"], []),
    _group("docker", "T1552.001", [".docker/config.json"], []),
    _group("gcloud", "T1552.001",
           [".config/gcloud/credentials.db", ".config/gcloud/access_tokens.db",
            ".config/gcloud/application_default_credentials.json",
            ".config/gcloud/legacy_credentials/*/adc.json",
            ".config/gcloud/legacy_credentials/*/.boto"], []),
    _group("azure", "T1552.001",
           [".azure/accessTokens.json", ".azure/msal_token_cache.*",
            ".azure/service_principal_entries.*"], []),
    _group("git-credentials", "T1552.001", [".git-credentials", ".config/git/credentials"], []),
    _group("netrc", "T1552.001", [".netrc"], []),
    _group("pgpass", "T1552.001", [".pgpass"], []),
    _group("mysql", "T1552.001", [".my.cnf", ".mylogin.cnf"], []),
    _group("vault", "T1552.001", [".vault-token"], []),
    _group("pypi", "T1552.001", [".pypirc"], []),
    _group("npm", "T1552.001", [".npmrc"], []),
    _group("cargo", "T1552.001", [".cargo/credentials", ".cargo/credentials.toml"], []),
    _group("github-cli", "T1552.001", [".config/gh/hosts.yml"], []),
    _group("terraform", "T1552.001", [".terraform.d/credentials.tfrc.json"], []),
    _group("rclone", "T1552.001", [".config/rclone/rclone.conf"], []),
    _group("s3cmd", "T1552.001", [".s3cfg"], []),
    _group("password-store", "T1555", [".password-store/**/*.gpg"], []),
    _group("keyrings", "T1555", [".local/share/keyrings/*.keyring"],
           ["/usr/bin/gnome-keyring-daemon"]),
    _group("firefox", "T1555.003",
           [f"{root}/*/{name}"
            for root in (".mozilla/firefox", "snap/firefox/common/.mozilla/firefox")
            for name in ("logins.json", "key4.db", "key3.db", "signons.sqlite")],
           [AllowedProgram(p, deny_args=_BROWSER_DENY)
            for p in ("/usr/lib/firefox-esr/firefox-esr", "/usr/lib/firefox/firefox")]),
    _group("chromium-family", "T1555.003",
           [f".config/{d}/*/Login Data*" for d in _CHROMIUM_DIRS] + [".config/opera/Login Data*"],
           [AllowedProgram(p, deny_args=_BROWSER_DENY) for p in (
               "/usr/lib/chromium/chromium", "/opt/google/chrome/chrome",
               "/opt/google/chrome-beta/chrome", "/opt/brave.com/brave/brave",
               "/opt/microsoft/msedge/msedge", "/opt/vivaldi/vivaldi-bin",
               "/usr/lib/x86_64-linux-gnu/opera/opera")]),
)

DEFAULT_SYSTEM_FILES: tuple[CredentialGroup, ...] = (
    _group("shadow", "T1003.008",
           ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"],
           [*_SSHD, _SUDO, "/usr/sbin/unix_chkpwd", "/usr/bin/su", "/usr/bin/login",
            "/usr/bin/passwd", "/usr/bin/chage", "/usr/bin/chfn", "/usr/bin/chsh",
            "/usr/bin/gpasswd", "/usr/bin/newgrp", "/usr/bin/expiry", "/usr/sbin/cron",
            "/usr/sbin/atd", "/usr/lib/systemd/systemd", "/usr/lib/polkit-1/polkitd",
            "/usr/lib/polkit-1/polkit-agent-helper-1", "/usr/sbin/gdm3", "/usr/sbin/lightdm",
            *[f"/usr/sbin/{tool}" for tool in (
                "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "chpasswd",
                "chgpasswd", "newusers", "pwconv", "pwunconv", "grpconv", "grpunconv")]]),
    _group("ssh-host-keys", "T1552.004", ["/etc/ssh/ssh_host_*_key"],
           [*_SSHD, _KEYGEN, "/usr/lib/openssh/ssh-keysign"]),
)

DEFAULT_EXCLUDE = ("*.pub", "authorized_keys", "authorized_keys2", "known_hosts",
                   "known_hosts.old")
DEFAULT_SYSTEM_DIRS = ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/bin",
                       "/sbin", "/lib", "/lib64", "/opt")


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    mode: Literal["enforce", "monitor"] = "enforce"
    homes: list[str] = field(default_factory=list)
    decision_timeout: float = field(default=30.0, metadata=_range(1, 3600))
    interaction_cap: float = field(default=120.0, metadata=_range(1, 3600))
    interaction_pause: float = field(default=15.0, metadata=_range(1, 600))
    default_action: Literal["allow", "deny"] = "deny"
    rules_file: str = "/var/lib/fluxtui/rules.yml"
    audit_db: str = "/var/lib/fluxtui/audit.db"
    state_file: str = "/var/lib/fluxtui/protected-inodes.json"
    unverified_reader_risk: float = field(default=50.0, metadata=_range(0, 100))
    journal: bool = True
    groups: list[CredentialGroup] = field(default_factory=lambda: list(DEFAULT_GROUPS))
    system_files: list[CredentialGroup] = field(
        default_factory=lambda: list(DEFAULT_SYSTEM_FILES))
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    unmarked_dirs: list[str] = field(default_factory=lambda: ["/etc"])
    system_dirs: list[str] = field(default_factory=lambda: list(DEFAULT_SYSTEM_DIRS))


@dataclass(frozen=True)
class NetworkConfig:
    enabled: bool = True
    poll_interval: float = field(default=0.25, metadata=_range(0.05, 60))
    # Seconds between two listings at most while the kernel's TCP/UDP counters do not move.
    idle_listing_interval: float = field(default=1.0, metadata=_range(0.05, 60))
    connect_trace: bool = True
    max_events_per_s: int = field(default=500, metadata=_range(1, 100000))
    portscan_ports: int = field(default=30, metadata=_range(2, 65535))
    portscan_hosts: int = field(default=30, metadata=_range(2, 1000000))
    portscan_window: float = field(default=10.0, metadata=_range(0.1, 3600))
    burst_destinations: int = field(default=50, metadata=_range(2, 1000000))
    burst_failures: int = field(default=100, metadata=_range(2, 1000000))
    burst_window: float = field(default=5.0, metadata=_range(0.1, 3600))
    beacon_min_hits: int = field(default=6, metadata=_range(3, 10000))
    beacon_max_jitter: float = field(default=0.1, metadata=_range(0, 1))
    beacon_min_interval: float = field(default=2.0, metadata=_range(0.1, 86400))
    beacon_max_interval: float = field(default=3600.0, metadata=_range(1, 86400))
    listener_alerts: bool = True
    portscan_risk: float = field(default=40.0, metadata=_range(0, 100))
    burst_risk: float = field(default=20.0, metadata=_range(0, 100))
    beacon_risk: float = field(default=30.0, metadata=_range(0, 100))
    listener_risk: float = field(default=15.0, metadata=_range(0, 100))


@dataclass(frozen=True)
class AnomalyConfig:
    """The anomaly model (fluxtui/detection/anomaly): see config.yml for each key."""

    enabled: bool = True
    model_path: str = "/var/lib/fluxtui/anomaly.model"
    store_path: str = "/var/lib/fluxtui/anomaly-windows.db"
    train_duration: float = field(default=300.0, metadata=_range(10, 604800))
    false_alarm_rate: float = field(default=0.01, metadata=_range(0.0001, 0.5))
    holdout_fraction: float = field(default=0.3, metadata=_range(0.05, 0.9))
    min_profile_windows: int = field(default=5, metadata=_range(1, 1000000))
    max_store_windows: int = field(default=200000, metadata=_range(1000, 10000000))
    retrain_interval: float = field(default=0.0, metadata=_range(0, 604800))
    alert_score: float = field(default=70.0, metadata=_range(50, 100))


@dataclass(frozen=True)
class StreamConfig:
    """The headless ECS stream (fluxtui/ecs, fluxtui/headless.py): see config.yml."""

    # "list": one document per tick with every process in an array; "state": one `state`
    # document per process per tick (what an entity index expects); "both".
    process_documents: Literal["list", "state", "both"] = "list"
    # Seconds between two full listings of the socket table (the first one at start).
    connection_listing_interval: float = field(default=60.0, metadata=_range(1, 86400))
    # Seconds between two full listings of the processes (the first one at start); the ticks
    # between carry only the processes that changed and those gone. 0: every tick in full.
    process_listing_interval: float = field(default=60.0, metadata=_range(0, 86400))


@dataclass(frozen=True)
class PersistencePlace:
    """A place attackers use to stay (config.yml `persistence.places`). `path` is absolute or
    starts with "~/" (then it is looked for in every home); a directory means every entry in
    it, down `depth` levels of subdirectories. `kind` says how its content is compared:
    text, crontab (every new line is an alert), authorized_keys (keys shown by type, comment and
    fingerprint), shadow (only user names). `writers`: executables (full paths, globs) expected
    to change it, counted only when verified; `severity` and `risk`: of a change by any other
    process."""

    path: str = ""
    technique: str = "T1546"
    kind: Literal["text", "crontab", "authorized_keys", "shadow"] = "text"
    depth: int = field(default=0, metadata=_range(0, 3))
    writers: list[str] = field(default_factory=list)
    severity: Literal["medium", "high", "critical"] = "high"
    risk: float = field(default=50.0, metadata=_range(0, 100))


_ACCOUNT_TOOLS = [f"/usr/sbin/{tool}" for tool in (
    "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "chpasswd", "chgpasswd",
    "newusers", "pwconv", "pwunconv", "grpconv", "grpunconv", "vipw", "vigr")] + [
    f"/usr/bin/{tool}" for tool in ("passwd", "chage", "chfn", "chsh", "gpasswd", "newgrp")] + [
    "/usr/bin/systemd-sysusers"]
_SYSTEMD = ["/usr/bin/systemctl", "/usr/lib/systemd/systemd", "/usr/lib/systemd/systemd-*"]


def _place(path: str, technique: str, kind: Literal["text", "crontab", "authorized_keys",
                                                    "shadow"] = "text",
           writers: list[str] | None = None, depth: int = 0,
           severity: Literal["medium", "high", "critical"] = "high",
           risk: float = 50.0) -> PersistencePlace:
    return PersistencePlace(path, technique, kind, depth, list(writers or []), severity, risk)


DEFAULT_PERSISTENCE_PLACES: tuple[PersistencePlace, ...] = (
    _place("~/.ssh/authorized_keys", "T1098.004", "authorized_keys", severity="medium"),
    _place("~/.ssh/authorized_keys2", "T1098.004", "authorized_keys", severity="medium"),
    *[_place(f"~/{rc}", "T1546.004", severity="medium")
      for rc in (".bashrc", ".profile", ".bash_profile", ".bash_login", ".bash_logout",
                 ".zshrc", ".zprofile", ".zshenv", ".zlogin")],
    _place("/etc/profile", "T1546.004"),
    _place("/etc/profile.d", "T1546.004"),
    _place("/etc/bash.bashrc", "T1546.004"),
    _place("/etc/zsh", "T1546.004"),
    _place("/etc/crontab", "T1053.003", "crontab"),
    *[_place(f"/etc/{d}", "T1053.003", "crontab")
      for d in ("cron.d", "cron.hourly", "cron.daily", "cron.weekly", "cron.monthly")],
    _place("/var/spool/cron", "T1053.003", "crontab", ["/usr/bin/crontab"], depth=1),
    _place("/var/spool/cron/atjobs", "T1053.002", "crontab", ["/usr/bin/at", "/usr/sbin/atd"]),
    _place("/var/spool/at", "T1053.002", "crontab", ["/usr/bin/at", "/usr/sbin/atd"]),
    _place("/etc/systemd/system", "T1543.002", writers=_SYSTEMD, depth=1),
    _place("/usr/lib/systemd/system", "T1543.002", writers=_SYSTEMD, depth=1),
    _place("/etc/systemd/user", "T1543.002", writers=_SYSTEMD, depth=1),
    _place("~/.config/systemd/user", "T1543.002", writers=_SYSTEMD, depth=1),
    _place("/etc/passwd", "T1136.001", writers=_ACCOUNT_TOOLS),
    _place("/etc/group", "T1098", writers=_ACCOUNT_TOOLS),
    _place("/etc/shadow", "T1098", "shadow", writers=_ACCOUNT_TOOLS),
    _place("/etc/gshadow", "T1098", "shadow", writers=_ACCOUNT_TOOLS),
    _place("/etc/sudoers", "T1548.003", writers=["/usr/sbin/visudo"]),
    _place("/etc/sudoers.d", "T1548.003", writers=["/usr/sbin/visudo"]),
    _place("/etc/ld.so.preload", "T1574.006", severity="critical", risk=60.0),
    _place("/etc/pam.d", "T1556.003", writers=["/usr/sbin/pam-auth-update"]),
    _place("/etc/ssh/sshd_config", "T1098.004"),
    _place("/etc/ssh/sshd_config.d", "T1098.004"),
    _place("/etc/udev/rules.d", "T1546"),
    _place("/usr/lib/udev/rules.d", "T1546"),
    _place("/etc/rc.local", "T1037.004"),
)
# Package managers: a change made by one (verified), or by a process it started (its maintainer
# scripts), is a package being installed, removed or configured.
DEFAULT_PACKAGE_MANAGERS = ("/usr/bin/dpkg", "/usr/bin/rpm", "/usr/bin/dnf", "/usr/bin/yum",
                            "/usr/bin/zypper", "/usr/bin/pacman", "/usr/bin/apk")
# Programs that rename, replace or delete many files as their job (unpacking packages, syncing
# trees, checking out branches, extracting over a tree): verified, they are not ransomware-like.
DEFAULT_BULK_RENAMERS = ("/usr/bin/dpkg", "/usr/bin/rpm", "/usr/bin/rsync", "/usr/bin/git",
                         "/usr/lib/git-core/git", "/usr/bin/tar")


@dataclass(frozen=True)
class RansomwareConfig:
    """Many files renamed or rewritten by one process within seconds (T1486)."""

    enabled: bool = True
    renames: int = field(default=100, metadata=_range(5, 1000000))
    rewrites: int = field(default=200, metadata=_range(5, 1000000))
    window: float = field(default=10.0, metadata=_range(1, 600))
    risk: float = field(default=60.0, metadata=_range(0, 100))
    filesystems: list[str] = field(default_factory=lambda: ["/", "/home", "/tmp", "/var/tmp",
                                                            "/dev/shm", "/srv"])
    bulk_renamers: list[str] = field(default_factory=lambda: list(DEFAULT_BULK_RENAMERS))


@dataclass(frozen=True)
class PersistenceConfig:
    """The persistence and tampering watch (fluxtui/capabilities/persistence.py)."""

    enabled: bool = True
    homes: list[str] = field(default_factory=list)
    places: list[PersistencePlace] = field(
        default_factory=lambda: list(DEFAULT_PERSISTENCE_PLACES))
    package_managers: list[str] = field(default_factory=lambda: list(DEFAULT_PACKAGE_MANAGERS))
    entry_risk: float = field(default=50.0, metadata=_range(0, 100))
    expected_risk: float = field(default=5.0, metadata=_range(0, 100))
    content_limit: int = field(default=65536, metadata=_range(0, 16777216))
    cache_bytes: int = field(default=8388608, metadata=_range(0, 1073741824))
    burst_changes: int = field(default=100, metadata=_range(1, 1000000))
    burst_window: float = field(default=10.0, metadata=_range(1, 3600))
    ransomware: RansomwareConfig = field(default_factory=RansomwareConfig)


@dataclass(frozen=True)
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    syscalls: SyscallConfig = field(default_factory=SyscallConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    persistence: PersistenceConfig = field(default_factory=PersistenceConfig)
    source: str = field(default="<defaults>", metadata={"internal": True})


def default_config_path(explicit: str | None) -> Path | None:
    """--config wins; otherwise /etc/fluxtui/config.yml if present; otherwise built-in defaults."""
    if explicit:
        return Path(explicit)
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return None


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = read_policy_file(path).decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except UnsafeFileError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> Config:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    if root is None:
        return dataclasses.replace(Config(), source=source)
    cfg = _build(Config, root, source, "")
    return dataclasses.replace(cfg, source=source)


# --- the generic validator -------------------------------------------------------------------


def _fail(source: str, node: yaml.Node, key: str, expected: str) -> typing.NoReturn:
    shown = node.value if isinstance(node, yaml.ScalarNode) else _node_kind(node)
    raise ConfigError(
        f"{source}:{node.start_mark.line + 1}: {key or '<top>'}: expected {expected}, got {shown!r}"
    )


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a value"


def _build(cls: type, node: yaml.Node, source: str, prefix: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        _fail(source, node, prefix, "a mapping of settings")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            _fail(source, key_node, prefix, "a setting name")
        name = key_node.value
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"{source}:{key_node.start_mark.line + 1}: {key}: unknown key (known: {known})"
            )
        if name in values:
            raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: {key}: given twice")
        values[name] = _convert(hints[name], fields[name], value_node, source, key)
    return cls(**values)


def _convert(tp: Any, fld: dataclasses.Field[Any] | None, node: yaml.Node, source: str, key: str
             ) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, node, source, key)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], fld, node, source, key)
    if origin is Literal:
        value = _scalar(node, source, key, "one of " + ", ".join(map(str, args)))
        if value not in args:
            _fail(source, node, key, "one of " + ", ".join(map(str, args)))
        return value
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            _fail(source, node, key, "a list")
        return [_convert(args[0], None, item, source, f"{key}[{i}]")
                for i, item in enumerate(node.value)]
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            _fail(source, node, key, "a mapping")
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            k = _convert(args[0], None, k_node, source, key)
            out[k] = _convert(args[1], fld, v_node, source, f"{key}.{k}")
        return out
    if tp is bool:
        value = _scalar(node, source, key, "true or false")
        if not isinstance(value, bool):
            _fail(source, node, key, "true or false")
        return value
    if tp in (int, float):
        expected = "a whole number" if tp is int else "a number"
        bounds = fld.metadata.get("range") if fld is not None else None
        if bounds:
            expected += f" from {bounds[0]} to {bounds[1]}"
        value = _scalar(node, source, key, expected)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(source, node, key, expected)
        if tp is int and not isinstance(value, int):
            _fail(source, node, key, expected)
        if bounds and not bounds[0] <= value <= bounds[1]:
            _fail(source, node, key, expected)
        return tp(value)
    if tp is str:
        value = _scalar(node, source, key, "a string")
        if not isinstance(value, str):
            _fail(source, node, key, "a string")
        return value
    raise TypeError(f"config type {tp!r} for {key} is not supported")


_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.Node, source: str, key: str, expected: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        _fail(source, node, key, expected)
    try:
        return _LOADER.construct_object(node, deep=True)
    except yaml.YAMLError:  # an unknown tag such as !!python/name: never constructed
        _fail(source, node, key, f"{expected} (tag {node.tag} is not accepted)")


def config_from_env_or_file(explicit: str | None) -> Config:
    """The configuration a command should run with (see `default_config_path`)."""
    return load_config(default_config_path(explicit or os.environ.get("FLUXTUI_CONFIG")))
