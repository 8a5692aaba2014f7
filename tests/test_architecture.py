"""The engine and everything below it work without textual; CI enforces the skip rule."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BELOW_TUI = ["fluxtui.engine", "fluxtui.headless", "fluxtui.capabilities.assembly",
             "fluxtui.config", "fluxtui.events", "fluxtui.component", "fluxtui.bus", "fluxtui.ecs",
             "fluxtui.replay", "fluxtui.doctor", "fluxtui.views", "fluxtui.commands",
             "fluxtui.capabilities.command_dispatch",
             "fluxtui.collectors.metrics", "fluxtui.collectors.processes"]


def test_nothing_below_tui_imports_textual() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in BELOW_TUI)
            + "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
            + "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_import_contracts_hold() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def run_pytest_on(tmp_path: Path, body: str, ci: bool) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_gate.py"
    test.write_text(textwrap.dedent(body))
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n"
                                          "from tests.conftest import pytest_runtest_makereport"
                                          "  # noqa: F401\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CI": "true" if ci else "false"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(test)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_kernel_skip_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    body = """
        from tests.kernel import require
        def test_needs_feature():
            require(False, "feature missing")
    """
    local = run_pytest_on(tmp_path, body, ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    in_ci = run_pytest_on(tmp_path, body, ci=True)
    assert in_ci.returncode == 1 and "1 failed" in in_ci.stdout, in_ci.stdout
    assert "feature missing" in in_ci.stdout


def test_any_skip_fails_in_ci(tmp_path: Path) -> None:
    body = """
        import pytest
        def test_plain_skip():
            pytest.skip("no reason good enough for CI")
    """
    assert run_pytest_on(tmp_path, body, ci=True).returncode == 1


def test_the_ui_never_looks_a_component_up_or_guesses_a_widget_by_its_attributes() -> None:
    """The UI reads snapshot views and acts through `Commands`; the widgets it feeds implement
    `SnapshotReader` / `BusReader` (found with isinstance, not hasattr)."""
    offenders = []
    for path in sorted((REPO / "fluxtui" / "tui").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ".component(" in line or "hasattr(" in line or "import fluxtui.capabilities" \
                    in line or "from fluxtui.capabilities.guard" in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
