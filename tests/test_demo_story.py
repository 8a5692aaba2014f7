"""The demo's story from the manifest, its narration line, its keys and its flags (no kernel)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Footer

from fluxtui.cli import build_parser, usage_error
from fluxtui.demo_mode.narration import DONE, PLAYING, DemoNarration
from fluxtui.demo_mode.player import outcome
from fluxtui.demo_mode.story import CHAPTERS, build_story
from fluxtui.ecs import document
from fluxtui.evaluation.manifest import Scenario, default_demo_dir, load_manifest
from fluxtui.evaluation.observer import AlertRecord, Observation
from fluxtui.evaluation.scoring import Result
from fluxtui.tui.demo_narration import DemoApp, Narration
from tests.fakes import StaticEngine, snapshot
from tests.tui_support import until

DEMO = default_demo_dir()


def manifest() -> list[Scenario]:
    assert DEMO is not None
    return load_manifest(DEMO)


def test_the_story_is_a_quiet_phase_then_one_step_per_attack_in_order() -> None:
    steps = build_story(manifest())
    assert len(steps) == 1 + len(CHAPTERS)
    assert steps[0].quiet and all(not s.attack for s in steps[0].scenarios)
    played = [s.scenarios[0].name for s in steps[1:6]]
    assert played == ["cred-read-python", "reverse-shell-bash", "ptrace-python-seize",
                      "memfd-exec-python", "port-scan-python"]
    assert [s.view for s in steps[1:3]] == ["guard", "connections"]
    assert all(s.number == i and s.total == len(steps) for i, s in enumerate(steps, 1))


def test_a_missing_chapter_is_a_step_that_says_it_was_skipped() -> None:
    scenarios = [s for s in manifest() if s.technique.split(".")[0] not in ("T1486", "T1098")
                 and s.name != "cred-read-python"]
    steps = build_story(scenarios)
    cred = steps[1]
    # The preferred scenario is gone: another main attack of the technique stands in...
    assert cred.scenarios == () or cred.scenarios[0].technique.startswith("T1552")
    ransom = next(s for s in steps if s.title == "ransomware-like renames")
    assert ransom.scenarios == ()
    assert ransom.missing == "skipped: scenario ransomware-rename-python not shipped"


def test_a_later_scenario_of_the_technique_is_found_by_technique() -> None:
    base = manifest()[0]
    added = replace(base, name="encrypt-home-files", title="A script renames 300 files",
                    technique="T1486", fits=("T1486",), view="processes", variant_of="")
    shipped = [s for s in manifest() if s.technique != "T1486"]  # the step's own is not shipped
    steps = build_story([*shipped, added])
    ransom = next(s for s in steps if s.scenarios and s.scenarios[0].name == added.name)
    assert ransom.title == "A script renames 300 files"


def test_the_narration_line_reads_like_the_issue() -> None:
    line = DemoNarration(3, 8, "A script reads ~/.aws/credentials", "guard", PLAYING,
                         hint="press d to deny").line()
    assert line == "Step 3/8 · A script reads ~/.aws/credentials · press d to deny"
    doc = document(DemoNarration(3, 8, "t", "guard", DONE, outcome="caught: x"))
    assert doc["event"]["dataset"] == "fluxtui.demo" and doc["fluxtui"]["demo"]["step"] == 3


def _result(scenario: Scenario, alerts: list[AlertRecord], status: str = "ok") -> Result:
    return Result(scenario, status, "needs gdb" if status == "skipped" else "",
                  Observation(alerts=alerts), True, 1.0, {})


def test_the_outcome_names_the_fitting_alert_of_the_actor_only() -> None:
    steps = build_story(manifest())
    step = steps[3]  # ptrace
    scenario = step.scenarios[0]
    support = AlertRecord("syscalls.ptrace_attach", "high", "T1055.008", "victim", 9,
                          "support", "rules", "Ptrace attach")
    assert outcome(step, [_result(scenario, [support])]) == "no alert"
    other = replace(support, role="actor", technique="T1046", title="Port scan")
    assert outcome(step, [_result(scenario, [other])]) == "no alert"
    actor = replace(support, role="actor", title="Ptrace attach\x1b[31m")
    said = outcome(step, [_result(scenario, [other, actor])])
    assert said.startswith("caught: Ptrace attach") and "\x1b" not in said
    assert outcome(step, [_result(scenario, [], "skipped")]) == "skipped: needs gdb"
    quiet = steps[0]
    assert outcome(quiet, [_result(s, []) for s in quiet.scenarios]) == "no alarm"


@pytest.mark.parametrize(("argv", "problem"), [
    (["--auto"], "--auto: only with demo"),
    (["serve", "--record", "x"], "--record: only with demo"),
    (["demo", "--port", "1"], "--port: only with serve"),
    (["demo", "--loops", "2"], "--loops: expected 1 or more, with --auto"),
    (["demo", "--headless"], "--headless: not for demo"),
    (["serve", "--port", "70000"], "--port: expected 1-65535"),
])
def test_flags_of_one_command_are_refused_elsewhere(argv: list[str], problem: str) -> None:
    assert usage_error(build_parser().parse_args(argv)) == problem


def test_demo_flags_fit_together() -> None:
    args = build_parser().parse_args(["demo", "--auto", "--loops", "1", "--step-delay", "2"])
    assert usage_error(args) is None


class StubPlayer:
    def __init__(self) -> None:
        self.narration = DemoNarration(0, 8, "starting", "processes", "starting")
        self.loops: int | None = None
        self.played_stories = 0
        self.calls: list[str] = []

    def next(self) -> None:
        self.calls.append("next")

    def toggle_pause(self) -> None:
        self.calls.append("pause")

    def restart(self) -> None:
        self.calls.append("restart")


async def test_the_narration_line_follows_the_player_and_brings_its_tab(tmp_path: Path) -> None:
    engine = StaticEngine(snapshot())
    player: Any = StubPlayer()
    app = DemoApp(engine, player)
    async with app.run_test(size=(80, 24)) as pilot:
        line = app.query_one(Narration)
        engine.bus.publish(DemoNarration(3, 8, "A bash reverse shell connects", "connections",
                                         PLAYING, hint="see the Connections tab"))
        await until(pilot, lambda: "Step 3/8" in str(line.render()))
        await until(pilot, lambda: app.query_one("#tabs").active == "connections")  # type: ignore[attr-defined]
        footer = app.query_one(Footer)
        assert line.region.y + line.region.height <= footer.region.y, (line.region, footer.region)
        await pilot.press("n", "space", "b")
        await until(pilot, lambda: len(player.calls) == 3)
        assert player.calls == ["next", "pause", "restart"]
