"""The demo's story: which scenarios of demo/scenarios.yml it plays, in which order.

A chapter names the scenarios it prefers and, failing those, the ATT&CK techniques of a main
attack that can stand in (so a scenario added later under another name is found). A chapter
with neither in the manifest stays in the story as a step that says it was skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxtui.evaluation.manifest import Scenario, base_technique


@dataclass(frozen=True)
class Chapter:
    label: str  # what the step is about, when its scenario is missing
    names: tuple[str, ...]  # preferred scenarios, in order
    techniques: tuple[str, ...] = ()  # else the first main attack with one of these


# The quiet phase: ordinary work that must not alarm (needs only python3, tar and gzip).
QUIET = Chapter("ordinary work", ("tar-archive", "python-build-script"))
# Python variants first where the main scenario needs a tool the product does not install
# (gdb): the story runs on any machine `make run` set up.
CHAPTERS = (
    Chapter("credential theft", ("cred-read-python",), ("T1552.001",)),
    Chapter("reverse shell", ("reverse-shell-bash",), ("T1059.004",)),
    Chapter("ptrace injection", ("ptrace-python-seize", "ptrace-gdb"), ("T1055.008",)),
    Chapter("memfd execution", ("memfd-exec-python",), ("T1620",)),
    Chapter("port scan", ("port-scan-python", "port-scan-bash"), ("T1046",)),
    # The last two come with the persistence watch (scenarios of the "persistence" work):
    # until they are shipped, their steps say so. The key is appended in the decoy home.
    Chapter("ransomware-like renames", ("ransomware-rename-python",), ("T1486",)),
    Chapter("persistence", ("authorized-keys-append",),
            ("T1098.004", "T1053.003", "T1543.002", "T1546.004", "T1574.006")),
)


@dataclass(frozen=True)
class Step:
    number: int  # 1-based
    total: int
    title: str  # the narration: the scenario's title, or what is missing
    view: str  # processes, connections or guard
    scenarios: tuple[Scenario, ...]  # played one after the other; none: skipped
    missing: str = ""  # "skipped: scenario X not shipped"

    @property
    def quiet(self) -> bool:
        return bool(self.scenarios) and not any(s.attack for s in self.scenarios)


def pick(chapter: Chapter, manifest: list[Scenario]) -> list[Scenario]:
    by_name = {s.name: s for s in manifest}
    named = [by_name[n] for n in chapter.names if n in by_name]
    if named:
        return named[:1] if chapter is not QUIET else named
    wanted = {base_technique(t) for t in chapter.techniques}
    for scenario in manifest:
        if scenario.attack and not scenario.variant_of and (
                scenario.technique in chapter.techniques
                or base_technique(scenario.technique) in wanted):
            return [scenario]
    return []


def build_story(manifest: list[Scenario]) -> list[Step]:
    chapters = (QUIET, *CHAPTERS)
    total = len(chapters)
    steps: list[Step] = []
    for number, chapter in enumerate(chapters, 1):
        chosen = pick(chapter, manifest)
        if not chosen:
            wanted = chapter.names[0] if chapter.names else "/".join(chapter.techniques)
            steps.append(Step(number, total, chapter.label, "processes", (),
                              f"skipped: scenario {wanted} not shipped"))
        elif chapter is QUIET:
            steps.append(Step(number, total, "Quiet phase: " + ", ".join(
                s.title[:1].lower() + s.title[1:] for s in chosen), "processes",
                tuple(chosen)))
        else:
            steps.append(Step(number, total, chosen[0].title, chosen[0].view, tuple(chosen)))
    return steps
