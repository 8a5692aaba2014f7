"""The shipped scenario manifest (demo/scenarios.yml) and the manifest validator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fluxtui.evaluation.manifest import (
    ManifestError,
    load_manifest,
    select,
    technique_fits,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"


def test_shipped_manifest_has_labelled_attacks_each_with_a_variant_and_benign_scenarios() -> None:
    scenarios = load_manifest(DEMO)
    mains = [s for s in scenarios if s.attack and not s.variant_of]
    variants = [s for s in scenarios if s.variant_of]
    benign = [s for s in scenarios if not s.attack]
    assert len(mains) >= 12 and len(benign) >= 8
    varied = {s.variant_of for s in variants}
    assert {s.name for s in mains} <= varied
    for s in scenarios:
        if s.attack:
            assert re.match(r"^T\d{4}(\.\d{3})?$", s.technique), s.name
            assert s.fits[0] == s.technique
        else:
            assert not s.technique and not s.fits and not s.variant_of
    for v in variants:
        main = next(s for s in mains if s.name == v.variant_of)
        assert v.script != main.script and v.varies


def test_shipped_scripts_use_the_library_that_refuses_a_real_home() -> None:
    for s in load_manifest(DEMO):
        text = s.script.read_text()
        assert text.startswith("#!/bin/bash\n"), s.name
        assert '. "$(dirname "$0")/../lib.sh"' in text, s.name
    lib = (DEMO / "lib.sh").read_text()
    assert ".fluxtui-decoy" in lib


def _write(tmp_path: Path, body: str, scripts: tuple[str, ...] = ("a.sh", "b.sh", "c.sh")
           ) -> Path:
    for name in scripts:
        script = tmp_path / name
        script.write_text("#!/bin/bash\n")
        script.chmod(0o755)
    (tmp_path / "scenarios.yml").write_text("version: 1\nscenarios:\n" + body)
    return tmp_path


GOOD = """\
  - {name: a, label: attack, script: a.sh, title: A, view: processes, technique: T1055.008}
  - {name: b, label: attack, script: b.sh, title: B, view: processes, technique: T1055,
     variant_of: a, varies: another tool}
  - {name: c, label: benign, script: c.sh, title: C, view: processes}
"""


def test_a_valid_manifest_loads(tmp_path: Path) -> None:
    scenarios = load_manifest(_write(tmp_path, GOOD))
    assert [s.name for s in scenarios] == ["a", "b", "c"]
    assert [s.name for s in select(scenarios, ["c", "a"])] == ["a", "c"]


@pytest.mark.parametrize(("body", "message"), [
    (GOOD.replace("technique: T1055.008", "technique: T105"), "not an ATT&CK technique"),
    (GOOD.replace("variant_of: a, varies: another tool", "varies: another tool"),
     "needs both variant_of and varies"),
    (GOOD.replace("variant_of: a,", "variant_of: c,"), "is not a main attack"),
    (GOOD.replace("  - {name: b", "  - {name: b, label: benign") .replace(
        "label: benign, label: attack", "label: benign"), "only attacks have it"),
    (GOOD.split("  - {name: b")[0] + GOOD.split("tool}\n")[1], "needs at least one variant"),
    (GOOD.replace("name: c,", "name: a,"), "name given twice"),
    (GOOD.replace("script: c.sh", "script: ../c.sh"), "is not a file in"),
    (GOOD.replace("view: processes}", "view: processes, colour: red}"), "unknown key colour"),
    (GOOD.replace("label: benign", "label: harmless"), "expected attack or benign"),
    (GOOD.replace("title: C, view: processes}", "title: C, view: processes, timeout: 0}"),
     "timeout"),
])
def test_a_bad_manifest_gets_one_clear_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load_manifest(_write(tmp_path, body))


def test_an_unknown_scenario_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown scenario 'zz'"):
        select(load_manifest(_write(tmp_path, GOOD)), ["zz"])


def test_a_script_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    directory = _write(tmp_path, GOOD)
    (directory / "b.sh").chmod(0o644)
    with pytest.raises(ManifestError, match="not executable"):
        load_manifest(directory)


def test_techniques_fit_on_their_base_technique() -> None:
    assert technique_fits("T1055", ("T1055.008",))
    assert technique_fits("T1055.008", ("T1055",))
    assert technique_fits("T1552.001", ("T1552.004", "T1552.001"))
    assert not technique_fits("T1059", ("T1055.008",))
    assert not technique_fits("", ("T1055.008",))
