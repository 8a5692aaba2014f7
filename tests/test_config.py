from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.config import Config, ConfigError, load_config, parse_config
from tests.kernel import require_root

REPO = Path(__file__).resolve().parents[1]


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yml")
    return str(info.value)


def test_repo_config_is_valid_and_documents_every_section() -> None:
    config = load_config(REPO / "config.yml")
    assert config.general.refresh_interval == 1.0
    assert config.rules == Config().rules  # the documented lists are the defaults
    text = (REPO / "config.yml").read_text()
    for section in ("general", "syscalls", "risk", "guard", "network", "rules"):
        assert f"\n{section}:" in text


def test_every_setting_in_config_yml_is_commented() -> None:
    """Each setting of a section has a comment block above it (keys may share one block)."""
    lines = (REPO / "config.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if not (line.startswith("  ") and not line.startswith("   ") and ":" in line):
            continue
        for above in reversed(lines[:index]):
            if above.strip().startswith("#"):
                break
            assert above.strip() and above.startswith(" "), f"undocumented setting: {line!r}"


def test_empty_file_gives_defaults() -> None:
    config = parse_config("", "cfg.yml")
    assert config.general == Config().general
    assert config.source == "cfg.yml"


def test_values_are_typed() -> None:
    config = parse_config("general:\n  refresh_interval: 2\nguard:\n  mode: monitor\n", "c")
    assert config.general.refresh_interval == 2.0
    assert isinstance(config.general.refresh_interval, float)
    assert config.guard.mode == "monitor"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("general:\n  refresh: 1\n", "cfg.yml:2: general.refresh: unknown key"),
        ("bogus: 1\n", "cfg.yml:1: bogus: unknown key"),
        ("general:\n  refresh_interval: fast\n",
         "cfg.yml:2: general.refresh_interval: expected a number from 0.1 to 60, got 'fast'"),
        ("general:\n  refresh_interval: 0\n",
         "cfg.yml:2: general.refresh_interval: expected a number from 0.1 to 60, got '0'"),
        ("general:\n  refresh_interval: 61\n", "expected a number from 0.1 to 60, got '61'"),
        ("general:\n  history_seconds: 2.5\n", "expected a whole number from 10 to 3600"),
        ("general:\n  theme: [a]\n", "general.theme: expected a string, got 'a list'"),
        ("guard:\n  mode: block\n", "guard.mode: expected one of enforce, monitor, got 'block'"),
        ("guard:\n  enabled: yes please\n", "guard.enabled: expected true or false"),
        ("guard:\n  homes: /home\n", "guard.homes: expected a list, got '/home'"),
        ("risk: 5\n", "cfg.yml:1: risk: expected a mapping of settings, got '5'"),
        ("risk:\n  base_risk_scores:\n    ptrace: high\n",
         "cfg.yml:3: risk.base_risk_scores.ptrace: expected a number"),
        ("general:\n  refresh_interval: 1\n  refresh_interval: 2\n", "given twice"),
        ("general: [\n", "cfg.yml:2: not valid YAML"),
        ("- a\n- b\n", "cfg.yml:1: <top>: expected a mapping of settings"),
    ],
)
def test_bad_config_names_file_line_key_and_expectation(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_root_refuses_config_writable_by_others(tmp_path: Path) -> None:
    require_root()
    path = tmp_path / "config.yml"
    path.write_text("general:\n  refresh_interval: 1\n")
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by users other than its owner"):
        load_config(path)
    path.chmod(0o644)
    assert load_config(path).general.refresh_interval == 1.0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluxtui", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_cli_bad_config_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("general:\n  refresh_interval: -3\n")
    path.chmod(0o600)
    result = run_cli("--config", str(path), "--headless", "--timeout", "1")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (f"fluxtui: {path}:2: general.refresh_interval: expected a number from "
                        "0.1 to 60, got '-3'")
    assert "Traceback" not in result.stderr


def test_cli_rejects_non_positive_timeout() -> None:
    result = run_cli("--headless", "--timeout", "0")
    assert result.returncode == 2
    assert "--timeout" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("general:\n  theme: !!python/name:os.system x\n", "general.theme: expected a string"),
        ("general:\n  theme: !foo bar\n", "general.theme: expected a string"),
        ("general:\n  ? [a]\n  : 1\n", "cfg.yml:2: general: expected a setting name"),
    ],
)
def test_tags_and_odd_keys_get_the_one_line_error(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_root_refuses_config_in_a_directory_others_can_write(tmp_path: Path) -> None:
    require_root()
    directory = tmp_path / "shared"
    directory.mkdir()
    path = directory / "config.yml"
    path.write_text("general:\n  refresh_interval: 1\n")
    path.chmod(0o600)
    directory.chmod(0o777)  # anyone could replace the file
    with pytest.raises(ConfigError, match="lets users other than root replace it"):
        load_config(path)
    directory.chmod(0o1777)  # sticky, root-owned: others cannot replace root's file
    assert load_config(path).general.refresh_interval == 1.0


def test_root_refuses_config_owned_by_another_user(tmp_path: Path) -> None:
    require_root()
    path = tmp_path / "config.yml"
    path.write_text("general:\n  refresh_interval: 1\n")
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        load_config(path)
