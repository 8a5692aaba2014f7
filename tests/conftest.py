from __future__ import annotations

import pytest

from tests.kernel import IN_CI


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """In CI a skipped test is a failed test: every kernel feature is there and must be used."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {reason}"


@pytest.fixture
def safe_config(tmp_path_factory: pytest.TempPathFactory):
    """A config for running the real program in tests: every capability on, but the credential
    guard protects only an empty temporary home (never /root, /home or /etc)."""
    directory = tmp_path_factory.mktemp("safe-config")
    home = directory / "home"
    home.mkdir()
    path = directory / "config.yml"
    path.write_text(f"guard:\n  homes: [{home}]\n  system_files: []\n"
                    f"  rules_file: {directory / 'rules.yml'}\n"
                    f"  audit_db: {directory / 'audit.db'}\n"
                    f"  state_file: {directory / 'protected-inodes.json'}\n")
    path.chmod(0o600)
    return path
