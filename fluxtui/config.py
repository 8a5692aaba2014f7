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

from fluxtui.files import UnsafeFileError, read_policy_file

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
    ring_buffer_pages: int = field(default=64, metadata=_range(1, 4096))  # a power of two
    count_map_entries: int = field(default=65536, metadata=_range(1024, 4194304))
    event_queue_limit: int = field(default=10000, metadata=_range(100, 1000000))


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


@dataclass(frozen=True)
class AllowedProgram:
    """A program allowed to read a credential group. `path` is the full executable path (a glob
    such as /usr/lib/postgresql/*/bin/psql is accepted); the other fields narrow it further and
    are ignored when empty: `uids`/`euids` like "0" or "1000-60000" or "0,1000-60000", `parent`
    the full path of the parent's executable, `args` a glob on the arguments joined by spaces."""

    path: str = ""
    uids: str = ""
    euids: str = ""
    parent: str = ""
    args: str = ""


@dataclass(frozen=True)
class CredentialGroup:
    """Named glob patterns (relative to each home, or absolute for system files) and the
    programs allowed to read them. `technique` is the MITRE ATT&CK id reported for an access."""

    name: str = ""
    technique: str = "T1552.001"
    patterns: list[str] = field(default_factory=list)
    allowed: list[AllowedProgram] = field(default_factory=list)


def _group(name: str, technique: str, patterns: list[str], programs: list[str]
           ) -> CredentialGroup:
    return CredentialGroup(name, technique, patterns, [AllowedProgram(p) for p in programs])


_SSH_CLIENTS = ["/usr/bin/ssh", "/usr/bin/scp", "/usr/bin/sftp", "/usr/bin/ssh-add",
                "/usr/bin/ssh-agent", "/usr/bin/ssh-keygen", "/usr/bin/git", "/usr/bin/rsync",
                "/usr/lib/openssh/ssh-sk-helper"]
_GIT = ["/usr/bin/git", "/usr/lib/git-core/git", "/usr/lib/git-core/git-remote-http"]
_CHROMIUM_DIRS = ["chromium", "google-chrome", "google-chrome-beta", "BraveSoftware/Brave-Browser",
                  "microsoft-edge", "vivaldi"]

# The credential catalogue, relative to each home. Interpreters (python, node, perl, ruby,
# shells) are never listed: a script run by one would inherit the allowance.
DEFAULT_GROUPS: tuple[CredentialGroup, ...] = (
    _group("ssh-keys", "T1552.004",
           [".ssh/id_*", ".ssh/*.pem", ".ssh/*.key", ".ssh/*_rsa", ".ssh/*_ecdsa",
            ".ssh/*_ed25519", ".ssh/*_dsa", ".ssh/*_sk"], _SSH_CLIENTS),
    _group("aws", "T1552.001",
           [".aws/credentials", ".aws/config", ".aws/sso/cache/*.json", ".aws/cli/cache/*.json"],
           ["/usr/bin/aws", "/usr/bin/terraform"]),
    _group("gnupg", "T1552.004",
           [".gnupg/private-keys-v1.d/*", ".gnupg/secring.gpg"],
           ["/usr/bin/gpg", "/usr/bin/gpg2", "/usr/bin/gpg-agent", "/usr/bin/gpgsm",
            "/usr/lib/gnupg/gpg-protect-tool"]),
    _group("kube", "T1552.001", [".kube/config", ".kube/*.kubeconfig"],
           ["/usr/bin/kubectl", "/usr/bin/helm", "/usr/bin/k9s"]),
    _group("docker", "T1552.001", [".docker/config.json"],
           ["/usr/bin/docker", "/usr/libexec/docker/cli-plugins/docker-compose",
            "/usr/libexec/docker/cli-plugins/docker-buildx", "/usr/bin/podman",
            "/usr/bin/skopeo", "/usr/bin/buildah"]),
    _group("gcloud", "T1552.001",
           [".config/gcloud/credentials.db", ".config/gcloud/access_tokens.db",
            ".config/gcloud/application_default_credentials.json",
            ".config/gcloud/legacy_credentials/*/adc.json",
            ".config/gcloud/legacy_credentials/*/.boto"], ["/usr/bin/terraform"]),
    _group("azure", "T1552.001",
           [".azure/accessTokens.json", ".azure/msal_token_cache.*",
            ".azure/service_principal_entries.*"], ["/usr/bin/terraform"]),
    _group("git-credentials", "T1552.001", [".git-credentials", ".config/git/credentials"],
           [*_GIT, "/usr/lib/git-core/git-credential-store"]),
    _group("netrc", "T1552.001", [".netrc"],
           ["/usr/bin/curl", "/usr/bin/wget", *_GIT, "/usr/bin/ftp", "/usr/bin/lftp",
            "/usr/bin/fetchmail"]),
    _group("pgpass", "T1552.001", [".pgpass"],
           [f"/usr/lib/postgresql/*/bin/{tool}"
            for tool in ("psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_basebackup")]),
    _group("mysql", "T1552.001", [".my.cnf", ".mylogin.cnf"],
           ["/usr/bin/mysql", "/usr/bin/mariadb", "/usr/bin/mysqldump", "/usr/bin/mariadb-dump",
            "/usr/bin/mysqladmin", "/usr/bin/mariadb-admin"]),
    _group("vault", "T1552.001", [".vault-token"], ["/usr/bin/vault"]),
    _group("pypi", "T1552.001", [".pypirc"], []),
    _group("npm", "T1552.001", [".npmrc"], []),
    _group("cargo", "T1552.001", [".cargo/credentials", ".cargo/credentials.toml"],
           ["/usr/bin/cargo"]),
    _group("github-cli", "T1552.001", [".config/gh/hosts.yml"], ["/usr/bin/gh"]),
    _group("terraform", "T1552.001", [".terraform.d/credentials.tfrc.json"],
           ["/usr/bin/terraform"]),
    _group("rclone", "T1552.001", [".config/rclone/rclone.conf"], ["/usr/bin/rclone"]),
    _group("s3cmd", "T1552.001", [".s3cfg"], []),
    _group("password-store", "T1555", [".password-store/**/*.gpg"],
           ["/usr/bin/gpg", "/usr/bin/gpg2", "/usr/bin/gpg-agent"]),
    _group("keyrings", "T1555", [".local/share/keyrings/*.keyring"],
           ["/usr/bin/gnome-keyring-daemon"]),
    _group("firefox", "T1555.003",
           [f"{root}/*/{name}"
            for root in (".mozilla/firefox", "snap/firefox/common/.mozilla/firefox")
            for name in ("logins.json", "key4.db", "key3.db", "signons.sqlite")],
           ["/usr/lib/firefox-esr/firefox-esr", "/usr/lib/firefox/firefox"]),
    _group("chromium-family", "T1555.003",
           [f".config/{d}/*/Login Data*" for d in _CHROMIUM_DIRS] + [".config/opera/Login Data*"],
           ["/usr/lib/chromium/chromium", "/opt/google/chrome/chrome",
            "/opt/google/chrome-beta/chrome", "/opt/brave.com/brave/brave",
            "/opt/microsoft/msedge/msedge", "/opt/vivaldi/vivaldi-bin",
            "/usr/lib/x86_64-linux-gnu/opera/opera"]),
)

_SSHD = ["/usr/sbin/sshd", "/usr/lib/openssh/sshd-session", "/usr/lib/openssh/sshd-auth"]
DEFAULT_SYSTEM_FILES: tuple[CredentialGroup, ...] = (
    _group("shadow", "T1003.008",
           ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"],
           [*_SSHD, "/usr/sbin/unix_chkpwd", "/usr/bin/sudo", "/usr/bin/su", "/usr/bin/login",
            "/usr/bin/passwd", "/usr/bin/chage", "/usr/bin/chfn", "/usr/bin/chsh",
            "/usr/bin/gpasswd", "/usr/bin/newgrp", "/usr/bin/expiry", "/usr/sbin/cron",
            "/usr/sbin/atd", "/usr/lib/systemd/systemd", "/usr/lib/polkit-1/polkitd",
            "/usr/lib/polkit-1/polkit-agent-helper-1", "/usr/sbin/gdm3", "/usr/sbin/lightdm",
            *[f"/usr/sbin/{tool}" for tool in (
                "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "chpasswd",
                "chgpasswd", "newusers", "pwck", "grpck", "vipw", "pwconv", "pwunconv",
                "grpconv", "grpunconv")]]),
    _group("ssh-host-keys", "T1552.004", ["/etc/ssh/ssh_host_*_key"],
           [*_SSHD, "/usr/bin/ssh-keygen", "/usr/lib/openssh/ssh-keysign"]),
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
    connect_trace: bool = True
    max_events_per_s: int = field(default=500, metadata=_range(1, 100000))
    portscan_ports: int = field(default=30, metadata=_range(2, 65535))
    portscan_hosts: int = field(default=30, metadata=_range(2, 1000000))
    portscan_window: float = field(default=10.0, metadata=_range(0.1, 3600))
    burst_connections: int = field(default=200, metadata=_range(2, 1000000))
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
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    syscalls: SyscallConfig = field(default_factory=SyscallConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
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
