"""Command line: the dashboard (default), the headless stream, doctor, evaluate, train, demo or
serve.

The configuration is the file given with --config, else the one named by the FLUXTUI_CONFIG
environment variable, else /etc/fluxtui/config.yml when present, else the built-in defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fluxtui import malloc_policy
from fluxtui.config import Config, ConfigError, config_from_env_or_file

if TYPE_CHECKING:
    from textual.app import App

    from fluxtui.engine import Engine
    from fluxtui.prometheus import PrometheusExporter
    from fluxtui.stream_outputs import StreamSettings

log = logging.getLogger(__name__)

# Flags that only the headless mode reads: given to the dashboard or doctor they are an error
# (exit 2), never silently ignored. Their defaults are applied in `main`, so that "not given"
# stays visible here.
HEADLESS_ONLY = ("output", "timeout", "stream_file", "stream_max_mb", "stream_backups")
STREAM_MAX_MB = 100.0
STREAM_BACKUPS = 5
DEMO_ONLY = ("auto", "step_delay", "loops", "record")
SERVE_ONLY = ("port", "bind")
STEP_DELAY = 8.0
SERVE_PORT = 8470


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fluxtui")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxtui",
        description="Terminal dashboard for Linux host security. Run as root for the kernel "
                    "collectors (eBPF syscalls, credential guard); without root it runs passive.",
    )
    parser.add_argument("command", nargs="?",
                        choices=("doctor", "evaluate", "train", "replay", "demo", "serve"),
                        help="doctor: check which capabilities this machine offers; "
                             "evaluate: run the labelled scenarios of demo/ and score detection; "
                             "train: record this machine's behaviour and fit the anomaly model; "
                             "replay FILE: play a recorded stream in the dashboard; "
                             "demo: play the scenarios as a story on the dashboard (decoy home); "
                             "serve: the dashboard in a browser (one session at a time)")
    parser.add_argument("recording", nargs="?", metavar="FILE",
                        help="replay: a recording of --headless --output json (plain or gzip)")
    parser.add_argument("--version", action="version", version=f"fluxtui {package_version()}")
    parser.add_argument("--config", metavar="PATH",
                        help="configuration file (default: $FLUXTUI_CONFIG, else "
                             "/etc/fluxtui/config.yml if present, else built-in defaults)")
    parser.add_argument("--theme", metavar="NAME",
                        help="fluxtui-dark, fluxtui-light, fluxtui-contrast or a Textual theme")
    parser.add_argument("--headless", action="store_true",
                        help="no UI: print events to stdout (see --output)")
    parser.add_argument("--output", choices=("json", "text", "journal"),
                        help="headless output: JSON lines (Elastic Common Schema, the default), "
                             "compact text, or journal (each event as a systemd journal entry)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="headless: exit 0 after this many seconds")
    parser.add_argument("--stream-file", metavar="PATH",
                        help="headless: write the stream to this file (created 0600) instead "
                             "of stdout, rotated by size")
    parser.add_argument("--stream-max-mb", type=float, metavar="MB",
                        help=f"headless: rotate the stream file past this size "
                             f"(default {STREAM_MAX_MB:g})")
    parser.add_argument("--stream-backups", type=int, metavar="N",
                        help=f"headless: rotated files kept as PATH.1 ... PATH.N "
                             f"(default {STREAM_BACKUPS})")
    parser.add_argument("--no-journal", action="store_true",
                        help="do not send alerts to the systemd journal (sent by default when "
                             "one runs)")
    parser.add_argument("--prometheus", metavar="ADDR:PORT",
                        help="serve Prometheus metrics on http://ADDR:PORT/metrics "
                             "(ADDR defaults to 127.0.0.1; dashboard and headless)")
    parser.add_argument("--log", metavar="PATH", help="write diagnostics to this file")
    evaluate = parser.add_argument_group("evaluate")
    evaluate.add_argument("--json", metavar="PATH", help="also write the table as JSON here")
    evaluate.add_argument("--scenario", metavar="NAME", nargs="+", action="extend",
                          help="run only these scenarios (default: all)")
    evaluate.add_argument("--training-runs", type=int, default=2, metavar="N",
                          help="benign rounds recorded to train the model first (default 2: "
                          "the fit holds out the latest 30%% of the recording, so one round "
                          "would leave the last benign scenarios out of training; 0: none)")
    evaluate.add_argument("--demo-dir", metavar="DIR", help="scenarios (default: demo/)")
    demo = parser.add_argument_group("demo")
    demo.add_argument("--auto", action="store_true",
                      help="demo: play the story unattended, again and again (kiosk)")
    demo.add_argument("--step-delay", type=float, metavar="SECONDS",
                      help=f"demo --auto: pause between steps (default {STEP_DELAY:g})")
    demo.add_argument("--loops", type=int, metavar="N",
                      help="demo --auto: stop after the story played N times")
    demo.add_argument("--record", metavar="FILE",
                      help="demo: also write the engine's stream (JSON lines) to FILE")
    serve = parser.add_argument_group("serve")
    serve.add_argument("--port", type=int, metavar="PORT",
                       help=f"serve: TCP port (default {SERVE_PORT})")
    serve.add_argument("--bind", metavar="ADDR",
                       help="serve: listen on ADDR instead of 127.0.0.1 (anyone who can reach "
                            "it and has the URL's token gets the dashboard: a warning is "
                            "printed)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="train: seconds to record (default: anomaly.train_duration)")
    parser.add_argument("--append", action="store_true",
                        help="train: add to the feature store instead of starting it afresh")
    parser.add_argument("--speed", type=float, metavar="N",
                        help="replay: play N times faster than recorded (default 1)")
    return parser


def usage_error(args: argparse.Namespace) -> str | None:
    """One line saying what is wrong with flags that parse but do not fit together."""
    if not args.headless:
        given = [f"--{name.replace('_', '-')}" for name in HEADLESS_ONLY
                 if getattr(args, name) is not None]
        if given:
            mode = "doctor" if args.command == "doctor" else "the dashboard"
            return f"{', '.join(given)}: only with --headless (not for {mode})"
    for command, names in (("demo", DEMO_ONLY), ("serve", SERVE_ONLY)):
        given = [f"--{name.replace('_', '-')}" for name in names
                 if getattr(args, name) not in (None, False)]
        if given and args.command != command:
            return f"{', '.join(given)}: only with {command}"
    if args.step_delay is not None and args.step_delay < 0:
        return "--step-delay: expected 0 or more seconds"
    if args.loops is not None and (args.loops < 1 or not args.auto):
        return "--loops: expected 1 or more, with --auto"
    if args.port is not None and not 0 < args.port < 65536:
        return "--port: expected 1-65535"
    if args.command in ("demo", "serve") and args.headless:
        return f"--headless: not for {args.command}"
    if args.command == "doctor" and args.prometheus is not None:
        return "--prometheus: not for doctor"
    if args.stream_file is not None and args.output == "journal":
        return "--stream-file and --output journal: choose one"
    if args.stream_max_mb is not None and args.stream_max_mb <= 0:
        return "--stream-max-mb: expected a positive size in megabytes"
    if args.stream_backups is not None and args.stream_backups < 0:
        return "--stream-backups: expected 0 or more"
    if args.prometheus is not None:
        from fluxtui.prometheus import ListenAddressError, parse_listen_address

        try:
            parse_listen_address(args.prometheus)
        except ListenAddressError as exc:
            return f"--prometheus: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    malloc_policy.apply()  # before any thread exists: see fluxtui/malloc_policy.py
    args = build_parser().parse_args(argv)
    problem = usage_error(args)
    if problem is not None:
        print(f"fluxtui: {problem}", file=sys.stderr)
        return 2
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
    if args.command == "replay" or args.recording is not None or args.speed is not None:
        return run_replay(config, args)
    if args.command == "doctor":
        from fluxtui.doctor import run_doctor

        return run_doctor(config)
    if args.command == "evaluate":
        from fluxtui.evaluation.command import run_evaluate

        return run_evaluate(config, args.scenario, args.json, args.training_runs, args.demo_dir)
    if args.command == "train":
        from fluxtui.train import run_train

        return run_train(config, args.duration, args.append)
    if args.command == "demo":
        return run_demo_command(config, args)
    if args.command == "serve":
        from fluxtui.serve.command import run_serve

        return run_serve(args.config, args.theme, args.bind, args.port or SERVE_PORT,
                         args.log)
    privileged = os.geteuid() == 0
    if args.headless:
        from fluxtui.stream_outputs import StreamSettings

        stream = StreamSettings(
            output=args.output or "json", file=args.stream_file,
            max_bytes=int((args.stream_max_mb or STREAM_MAX_MB) * 1024 * 1024),
            backups=STREAM_BACKUPS if args.stream_backups is None else args.stream_backups,
            alerts_to_journal=not args.no_journal)
        return run_headless(config, privileged, stream.output, args.timeout, stream,
                            prometheus=args.prometheus)
    return run_tui(config, privileged, args.theme, prometheus=args.prometheus,
                   journal=not args.no_journal)


def run_demo_command(config: Config, args: argparse.Namespace) -> int:
    from fluxtui.demo_mode.command import run_demo
    from fluxtui.tui.demo_narration import DemoApp
    from fluxtui.tui.themes import theme_error

    problem = theme_error(args.theme or config.general.theme)
    if problem:
        print(f"fluxtui: {problem}", file=sys.stderr)
        return 2
    return run_demo(config, DemoApp, theme=args.theme, auto=args.auto,
                    step_delay=STEP_DELAY if args.step_delay is None else args.step_delay,
                    loops=args.loops, record=args.record, demo_dir=args.demo_dir)


def run_headless(config: Config, privileged: bool, output: str, timeout: float | None,
                 stream: StreamSettings | None = None, prometheus: str | None = None) -> int:

    from fluxtui.capabilities.assembly import build_components
    from fluxtui.engine import Engine
    from fluxtui.headless import HeadlessRunner
    from fluxtui.stream_outputs import OutputError, StreamSettings, open_outputs

    try:
        outputs = open_outputs(config, stream or StreamSettings(output=output))
    except OutputError as exc:
        print(f"fluxtui: {exc}", file=sys.stderr)
        return 2
    engine = Engine(config, build_components(config, privileged, interactive=False))
    try:
        with serving_metrics(engine, prometheus) as exporter:
            for note in outputs.notes:  # once it is sure to run
                print(f"fluxtui: {note}", file=sys.stderr)
            runner = HeadlessRunner(engine, output, outputs.out, outputs.sinks)
            if exporter is not None:
                exporter.count_drops("stream", lambda: runner.dropped)
                for sink in outputs.journal_sinks():  # at most one
                    exporter.count_drops("journal", sink.dropped_count)
            return runner.run(timeout)
    except MetricsUnavailable as exc:
        print(f"fluxtui: --prometheus: {exc}", file=sys.stderr)
        return 2
    except (OutputError, OSError) as exc:  # the stream file: disk full, rotation refused
        print(f"fluxtui: writing the stream failed: {exc}", file=sys.stderr)
        return 1
    finally:
        outputs.close()


def run_replay(config: Config, args: argparse.Namespace) -> int:
    """`fluxtui replay FILE [--speed N]`: no root, no kernel feature, no collector."""
    if args.command != "replay" or args.recording is None:
        print("fluxtui: usage: fluxtui replay FILE [--speed N]", file=sys.stderr)
        return 2
    speed = 1.0 if args.speed is None else args.speed
    if not 0 < speed <= 1000:
        print("fluxtui: --speed: expected a number above 0, at most 1000", file=sys.stderr)
        return 2
    from fluxtui.tui.themes import theme_error

    problem = theme_error(args.theme or config.general.theme)
    if problem:
        print(f"fluxtui: {problem}", file=sys.stderr)
        return 2
    from fluxtui.replay import RecordingError, ReplaySource
    from fluxtui.tui.app import FluxApp

    try:
        source = ReplaySource(args.recording, config, speed)
    except RecordingError as exc:
        print(f"fluxtui: {exc}", file=sys.stderr)
        return 2
    if source.recorded_at is None:
        print(f"fluxtui: {args.recording}: no fluxtui document in it "
              f"({source_lines(args.recording)})", file=sys.stderr)
        return 2
    # the header's ROOT/PASSIVE tells how it was recorded (replaying needs no root)
    result = FluxApp(source, privileged=source.privileged, theme_name=args.theme).run()
    print(f"fluxtui: replay of {args.recording}: {source.summary()}", file=sys.stderr)
    if source.damage is not None:
        return 1
    return 0 if result is None else int(result)


def source_lines(path: str) -> str:
    from fluxtui.replay.reader import ReadState, documents, open_recording

    state = ReadState()
    with open_recording(path) as stream:
        for _ in documents(stream, state):
            pass
    if state.damage is not None:
        return str(state.damage)
    return f"{state.foreign} other lines"


def run_tui(config: Config, privileged: bool, theme: str | None,
            prometheus: str | None = None, journal: bool = True) -> int:
    from fluxtui.tui.themes import theme_error

    problem = theme_error(theme or config.general.theme)  # before any collector or the UI
    if problem:
        print(f"fluxtui: {problem}", file=sys.stderr)
        return 2

    from fluxtui.capabilities.assembly import build_components
    from fluxtui.engine import Engine
    from fluxtui.journal_alerts import AlertJournal
    from fluxtui.tui.app import FluxApp

    engine = Engine(config, build_components(config, privileged, interactive=True))
    # The guard's responder answers the kernel from a thread; a shorter GIL switch interval
    # keeps a busy UI or engine thread from delaying an answer by up to 5 ms.
    sys.setswitchinterval(0.001)
    try:
        with serving_metrics(engine, prometheus) as exporter:
            alerts = AlertJournal.if_running(engine.bus) if journal else None
            if alerts is not None and exporter is not None:
                exporter.count_drops("journal", lambda: alerts.dropped + alerts.sink.dropped)
            app = FluxApp(engine, privileged, theme)
            ended = threading.Event()
            end_on_signals(app, engine, ended)
            try:
                result = app.run()
            finally:
                ended.set()
                if alerts is not None:
                    alerts.stop()
    except MetricsUnavailable as exc:
        print(f"fluxtui: --prometheus: {exc}", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


SIGNAL_GRACE_S = 10.0  # for the dashboard to end by itself after SIGTERM, SIGHUP or SIGINT


def end_on_signals(app: App[int], engine: Engine, ended: threading.Event,
                   grace_s: float = SIGNAL_GRACE_S) -> None:
    """SIGTERM, SIGHUP (the terminal went away) and SIGINT end the dashboard as `q` does: the
    app exits and stops the engine, so collectors undo what they set up (the audit fallback's
    rules, fanotify marks). When the app cannot end by itself within `grace_s` (with its
    terminal gone, Textual's writer can spin forever), the engine is stopped here and the
    process exits."""

    def backstop(signum: int) -> None:
        if ended.wait(grace_s):
            return
        log.warning("the dashboard did not end %.0f s after signal %d: stopping the engine "
                    "and exiting", grace_s, signum)
        with contextlib.suppress(Exception):
            engine.stop()
        os._exit(128 + signum)

    def handler(signum: int, _frame: object) -> None:
        def end() -> None:
            with contextlib.suppress(Exception):  # not running yet, or already ending
                app.call_from_thread(app.exit)
        threading.Thread(target=end, name="fluxtui-signal", daemon=True).start()
        threading.Thread(target=backstop, args=(signum,), name="fluxtui-signal-backstop",
                         daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


class MetricsUnavailable(Exception):
    """The Prometheus endpoint could not be started (address in use, not permitted)."""


@contextlib.contextmanager
def serving_metrics(engine: Engine, listen: str | None) -> Iterator[PrometheusExporter | None]:
    """Serves /metrics from the engine's bus while the block runs (nothing, and None, when
    `listen` is None). The endpoint is up before the engine starts, so no event is missed."""
    if listen is None:
        yield None
        return
    from fluxtui.prometheus import ListenAddressError, PrometheusExporter, parse_listen_address

    exporter = PrometheusExporter(engine.bus, *parse_listen_address(listen))
    try:
        exporter.start()
    except ListenAddressError as exc:
        raise MetricsUnavailable(str(exc)) from None
    try:
        yield exporter
    finally:
        exporter.stop()
