"""Command line: ``depwatch [serve|check|demo]``, ``--version``, ``--help``.

Invalid input exits 2 with one line on stderr starting ``depwatch: `` — never a
traceback, never a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from exporter import __version__
from exporter.config import ConfigError, Settings, add_setting_flags, load_settings
from exporter.entry import exit_on_sigterm
from exporter.logs import configure_logging, get_logger

__all__ = ["main"]

EXIT_OK, EXIT_PROBLEM, EXIT_CONFIG = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"depwatch: {message} (see depwatch --help)\n")
        raise SystemExit(EXIT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="depwatch",
        description="Watch this pod's Redis and OpenTelemetry Collector dependencies and "
        "publish what it sees as Prometheus metrics.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "check", "demo"),
                        help="serve (default): probe on a schedule and serve HTTP; check: probe "
                        "once, print a report, exit 0/1 (2: invalid configuration); demo: serve "
                        "against embedded stand-ins")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"depwatch {__version__}")
    parser.add_argument("--output", choices=("text", "json"), default="text",
                        help="check: report format [default: text]")  # fmt: skip
    add_setting_flags(parser)
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"depwatch: {message}\n")
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    # As PID 1 the kernel ignores SIGTERM without a handler (pods stuck in Terminating);
    # exporter.entry installs it before the imports, this covers direct calls of main().
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    # gRPC's C core logs to stderr on its own; keep stderr one JSON object per line.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    parser = build_parser()
    args = parser.parse_args(argv)
    flags: dict[str, Any] = vars(args)
    env = os.environ if env is None else env
    if args.command == "demo":
        from exporter.demo import run_demo

        return run_demo(flags)
    try:
        settings = load_settings(env, flags)
    except ConfigError as exc:
        return _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "check":
            return asyncio.run(run_check_command(settings, output=args.output))
        return asyncio.run(serve(settings))
    except ConfigError as exc:  # raised late, e.g. by the web config loader
        return _fail(str(exc))
    except OSError as exc:  # e.g. the listen address is taken
        return _fail(f"cannot serve on {_show_listen(settings)}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return EXIT_OK


def _show_listen(settings: Settings) -> str:
    host, port = settings.listen_address
    return f"{host or '*'}:{port}"


async def run_check_command(settings: Settings, *, output: str) -> int:
    from exporter.report import render_json, render_text, status_document
    from exporter.wiring import build_runtime

    runtime = build_runtime(settings, log=get_logger())
    try:
        snapshot = await runtime.scheduler.run_cycle()
        document = status_document(snapshot, sections=runtime.sections,
                                   extra_problems=runtime.extra_problems())  # fmt: skip
    finally:
        await runtime.close()
    sys.stdout.write(render_json(document) + "\n" if output == "json" else render_text(document))
    return EXIT_OK if document["ok"] else EXIT_PROBLEM


async def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; stop within 2 s."""
    from aiohttp import web

    from exporter.app import create_app
    from exporter.wiring import build_runtime

    log = get_logger()
    middlewares: list[web.Middleware] = []
    ssl_context = None
    if settings.web_config_file:  # bcrypt and yaml are loaded only when configured
        from exporter.web_security import load_web_security

        security = load_web_security(settings)
        middlewares, ssl_context = security.middlewares, security.ssl_context
    runtime = build_runtime(settings, log=log)
    app = create_app(settings, scheduler=runtime.scheduler, sections=runtime.sections,
                     extra_problems=runtime.extra_problems, middlewares=middlewares)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5,
                           handle_signals=False)  # fmt: skip
    await runner.setup()
    try:
        host, port = settings.listen_address
        site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context,
                           reuse_address=True)  # fmt: skip
        await site.start()
        log.info("depwatch listening", address=_show_listen(settings),
                 metrics_path=settings.metrics_path, version=__version__)  # fmt: skip
        await stop.wait()
        log.info("depwatch stopping")
    finally:
        try:
            async with asyncio.timeout(1.5):
                await runner.cleanup()
        except TimeoutError:
            log.warning("shutdown timed out; exiting anyway")
        await runtime.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return EXIT_OK
