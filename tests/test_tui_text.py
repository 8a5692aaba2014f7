"""Text from other users reads the same everywhere: table, details, prompt, alerts, headless."""

from __future__ import annotations

import io

from rich.console import Console

from fluxtui.events import Alert, ProcessKey, Severity
from fluxtui.guard.events import PromptView, Requester
from fluxtui.headless import text_line
from fluxtui.tui.alerts import COLUMN_INDEX, AlertGroup, alert_cells
from fluxtui.tui.guard_prompt import render_body
from fluxtui.tui.process_detail import ProcessDetailScreen
from fluxtui.tui.process_table import render_cells
from fluxtui.untrusted_text import safe_text, visible
from tests.fakes import StaticEngine, row, snapshot

RAW = b"evil\xff\xfe\r\n\x1b[2J\\x41\\\x07 end"
HOSTILE = RAW.decode("utf-8", "surrogateescape")  # as psutil and os.fsdecode read /proc
EXPECTED = "evil\\xff\\xfe\\x0d\\x0a\\x1b[2J\\\\x41\\\\\\x07 end"


def test_visible_escapes_controls_undecodable_bytes_and_ambiguous_backslashes() -> None:
    assert visible(HOSTILE) == EXPECTED
    assert visible("\r") == "\\x0d" and visible("\n") == "\\x0a"
    assert visible("C:\\dir\\file") == "C:\\dir\\file"  # a lone backslash stays as it is
    assert visible("\\x1b") == "\\\\x1b"  # typed literally: cannot pass for an ESC byte
    assert visible("\u202e") == "\\u202e"


def clean(text: str) -> None:
    assert EXPECTED in text
    assert not any(0xDC80 <= ord(c) <= 0xDCFF for c in text)
    assert "\r" not in text and "\x1b" not in text and "\ufffd" not in text


def hostile_row():  # type: ignore[no-untyped-def]
    return row(77, HOSTILE, cmdline=("/usr/bin/x", HOSTILE))


def test_table_cells() -> None:
    cells = render_cells(hostile_row())
    clean(cells[2][0])


def test_details_window() -> None:
    target = hostile_row()
    engine = StaticEngine(snapshot([target]))
    screen = ProcessDetailScreen(engine, target.key)
    console = Console(width=60, file=io.StringIO(), record=True, color_system=None)
    console.print(screen.render_detail())
    shown = console.export_text()
    clean(shown)
    assert all(len(line) <= 60 for line in shown.splitlines())  # never past the border


def test_alerts_table() -> None:
    alert = Alert(1.0, "r", "t", Severity.HIGH, "T1", "", ProcessKey(77, 1077), HOSTILE,
                  (HOSTILE,))
    cells = alert_cells(AlertGroup((alert,)))
    clean(cells[COLUMN_INDEX["process"]].plain)
    clean(cells[COLUMN_INDEX["reasons"]].plain)


def test_guard_prompt() -> None:
    requester = Requester(key=ProcessKey(77, 1077), exe="/tmp/" + HOSTILE,
                          cmdline=("/tmp/x", HOSTILE), uid=0, euid=0, user="root", ppid=1,
                          parent_exe="/sbin/init", sha256=None, package=None, verified=False,
                          verification="not from a package", flags=(HOSTILE,))
    view = PromptView(id=1, group="ssh-keys", technique="T1552.004", requester=requester,
                      tree=((77, "/tmp/x"),), files=("/home/a/.ssh/" + HOSTILE,), requests=1,
                      pids=(77,), deadline=30.0, paused_until=0.0, pause_left=0.0,
                      created=1.0, default_action="deny")
    text = render_body(view, (), 0.0, details=True).plain
    clean(text)
    assert text.count(EXPECTED) >= 4  # program, file, flag, command line


def test_headless_text_output() -> None:
    line = text_line({"@timestamp": "2026-01-01T00:00:00.000Z",
                      "event": {"kind": "alert", "dataset": "fluxtui.syscalls"},
                      "message": HOSTILE})
    clean(line)


def test_safe_text_is_never_markup() -> None:
    assert safe_text("[bold]x[/]" + HOSTILE).plain == "[bold]x[/]" + EXPECTED


def test_details_say_a_scored_host_process_runs_on_the_host() -> None:
    """The risk view lists the processes in a container only: a host process with a score
    says "none (host)", from its row, not "unknown"."""
    import dataclasses

    from fluxtui.detection.risk import ZERO
    from fluxtui.events import HOST
    from fluxtui.views import RiskView

    target = dataclasses.replace(row(78, "sshd"), container_identity=HOST)
    base = snapshot([target])
    engine = StaticEngine(dataclasses.replace(
        base, views={**base.views, "risk": RiskView(50.0, {target.key: ZERO}, {}, {})}))
    console = Console(width=100, file=io.StringIO(), record=True, color_system=None)
    console.print(ProcessDetailScreen(engine, target.key).render_detail())
    text = console.export_text()
    assert "none (host)" in text and "unknown" not in text.split("Container")[1].split("\n")[0]
