"""Command line: the dashboard (default), the headless stream, or doctor."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fluxtui.config import Config, ConfigError, config_from_env_or_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxtui",
        description="Terminal dashboard for Linux host security. Run as root for the kernel "
                    "collectors (eBPF syscalls, credential guard); without root it runs passive.",
    )
    parser.add_argument("command", nargs="?", choices=("doctor", "train"),
                        help="doctor: check which capabilities this machine offers; "
                             "train: record this machine's behaviour and fit the anomaly model")
    parser.add_argument("--config", metavar="PATH",
                        help="configuration file (default: /etc/fluxtui/config.yml if present)")
    parser.add_argument("--theme", metavar="NAME",
                        help="fluxtui-dark, fluxtui-light, fluxtui-contrast or a Textual theme")
    parser.add_argument("--headless", action="store_true",
                        help="no UI: print events to stdout (see --output)")
    parser.add_argument("--output", choices=("json", "text"), default="json",
                        help="headless output: JSON lines (Elastic Common Schema) or compact text")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="headless: exit 0 after this many seconds")
    parser.add_argument("--log", metavar="PATH", help="write diagnostics to this file")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="train: seconds to record (default: anomaly.train_duration)")
    parser.add_argument("--append", action="store_true",
                        help="train: add to the feature store instead of starting it afresh")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.INFO,
                            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    if args.timeout is not None and args.timeout <= 0:
        print("fluxtui: --timeout: expected a positive number of seconds", file=sys.stderr)
        return 2
    try:
        config = config_from_env_or_file(args.config)
    except ConfigError as exc:
        print(f"fluxtui: {exc}", file=sys.stderr)
        return 2
    if args.command == "doctor":
        from fluxtui.doctor import run_doctor

        return run_doctor(config)
    if args.command == "train":
        from fluxtui.train import run_train

        return run_train(config, args.duration, args.append)
    privileged = os.geteuid() == 0
    if args.headless:
        return run_headless(config, privileged, args.output, args.timeout)
    return run_tui(config, privileged, args.theme)


def run_headless(config: Config, privileged: bool, output: str, timeout: float | None) -> int:
    from fluxtui.components import build_components
    from fluxtui.engine import Engine
    from fluxtui.headless import HeadlessRunner

    engine = Engine(config, build_components(config, privileged, interactive=False))
    return HeadlessRunner(engine, output).run(timeout)


def run_tui(config: Config, privileged: bool, theme: str | None) -> int:
    from fluxtui.components import build_components
    from fluxtui.engine import Engine
    from fluxtui.tui.app import FluxApp

    engine = Engine(config, build_components(config, privileged, interactive=True))
    # The guard's responder answers the kernel from a thread; a shorter GIL switch interval
    # keeps a busy UI or engine thread from delaying an answer by up to 5 ms.
    sys.setswitchinterval(0.001)
    result = FluxApp(engine, privileged, theme).run()
    return 0 if result is None else int(result)
