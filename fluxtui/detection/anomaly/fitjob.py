"""Fit the model from the feature store and save it: run as a child process
(`python -m fluxtui.detection.anomaly.fitjob ...`) by `fluxtui train` and by background
retraining, so the fit never competes with the guard's responder thread for the interpreter lock.
Prints the report lines; exit status 0 when a model was saved, 1 with one line saying why not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fluxtui.detection.anomaly.modelfile import save_model
from fluxtui.detection.anomaly.store import FeatureStore, StoreError


def command(store: Path, model: Path, *, false_alarm_rate: float, holdout_fraction: float,
            min_profile_windows: int) -> list[str]:
    """The child's command line."""
    return [sys.executable, "-m", "fluxtui.detection.anomaly.fitjob", "--store", str(store),
            "--model", str(model), "--false-alarm-rate", repr(false_alarm_rate),
            "--holdout-fraction", repr(holdout_fraction),
            "--min-profile-windows", str(min_profile_windows)]


def syscall_names() -> dict[int, str]:
    """Names for the reasons, from the same table the capture uses ({} without bcc)."""
    try:
        from fluxtui.collectors.bpf_structs import FX_MAX_NR
        from fluxtui.collectors.syscall_table import SyscallTable

        table = SyscallTable.load()
    except Exception:  # no bcc: reasons then say "syscall 101"
        return {}
    names = dict(table.names)
    names.update({FX_MAX_NR + nr: table.name(FX_MAX_NR + nr) for nr in table.compat})
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluxtui-fitjob")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--false-alarm-rate", type=float, default=0.01)
    parser.add_argument("--holdout-fraction", type=float, default=0.3)
    parser.add_argument("--min-profile-windows", type=int, default=5)
    args = parser.parse_args(argv)
    # Here, not at the top: the dashboard imports this module for `command` and must never
    # import scikit-learn.
    from fluxtui.detection.anomaly.fit import FitReport, TrainingError, fit_models

    started = time.monotonic()
    try:
        with FeatureStore(args.store, create=False) as store:
            windows = list(store.windows())
    except StoreError as exc:
        print(f"fluxtui train: {exc}", flush=True)
        return 1
    print(f"fitting IsolationForest, One-Class SVM and DBSCAN on {len(windows):,} windows "
          f"(read in {time.monotonic() - started:.1f} s)…", flush=True)
    report: list[FitReport] = []
    try:
        model = fit_models(windows, names=syscall_names(), false_alarm_rate=args.false_alarm_rate,
                           holdout_fraction=args.holdout_fraction,
                           min_profile_windows=args.min_profile_windows, report=report)
    except TrainingError as exc:
        print(f"fluxtui train: {exc}", flush=True)
        return 1
    for line in report[0].lines():
        print(line, flush=True)
    try:
        size = save_model(model, args.model)
    except OSError as exc:
        print(f"fluxtui train: cannot write {args.model}: {exc.strerror}", flush=True)
        return 1
    print(f"model saved: {args.model} ({size / 1e6:.1f} MB, mode 0600, schema "
          f"{model.metadata['schema']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
