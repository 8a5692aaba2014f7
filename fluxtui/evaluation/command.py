"""`fluxtui evaluate`: checks, runs, prints the table, writes the JSON."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from fluxtui.config import Config
from fluxtui.evaluation.manifest import ManifestError, default_demo_dir, load_manifest, select
from fluxtui.evaluation.report import json_report, text_report, write_json
from fluxtui.evaluation.runner import Options, run_evaluation
from fluxtui.evaluation.sandbox import SandboxError


def run_evaluate(config: Config, names: list[str] | None, json_path: str | None,
                 training_runs: int = 2, demo_dir: str | None = None,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if os.geteuid() != 0:
        print("fluxtui evaluate: needs root (it runs the real collectors: eBPF, fanotify, "
              "netlink)", file=err)
        return 2
    directory = Path(demo_dir) if demo_dir else default_demo_dir()
    if directory is None:
        print("fluxtui evaluate: no demo/ directory with scenarios.yml found "
              "(give one with --demo-dir)", file=err)
        return 2
    try:
        manifest = load_manifest(directory)
        scenarios = select(manifest, names)
    except ManifestError as exc:
        print(f"fluxtui evaluate: {exc}", file=err)
        return 2
    if json_path is not None and not Path(json_path).parent.resolve().is_dir():
        print(f"fluxtui evaluate: --json: no directory for {json_path}", file=err)
        return 2
    benign = [s for s in manifest if not s.attack]
    try:
        results, context = run_evaluation(config, scenarios, benign,
                                          Options(directory, training_runs, progress=err))
    except SandboxError as exc:
        print(f"fluxtui evaluate: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("fluxtui evaluate: interrupted; every scenario process and temporary "
              "directory was removed", file=err)
        return 130
    print(text_report(results, context), file=out)
    if json_path is not None:
        write_json(Path(json_path), json_report(results, context))
    return 0
