"""Command line: `sipbridge serve` runs the bridge, `sipbridge agent` runs the reference agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from . import logs
from .config import SETTINGS, load_config
from .settings.declare import shown_default
from .settings.security import security_warnings
from .settings.values import ConfigError, parse_host_port

FLAGS = tuple(item for item in SETTINGS.values() if item.flag)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipbridge", description="Bridge SIP phone calls into a voice agent."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the bridge",
        description="Run the bridge. Every setting, and its SIPBRIDGE_* variable: docs/configuration.md.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    for item in FLAGS:
        serve.add_argument(
            item.flag,
            dest=item.name,
            metavar=None if item.spec.value.choices else item.spec.value.metavar,
            choices=item.spec.value.choices,
            help=f"{item.spec.help} (default {shown_default(item)}; {item.env})",
        )

    agent = sub.add_parser("agent", help="run the embedded reference voice agent as a WHIP server")
    agent.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    agent.add_argument("--mode", default="echo", choices=["echo", "relay", "silence"])
    agent.add_argument(
        "--resume-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a resume token stays valid (default 30)",
    )
    agent.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .bridge import serve

    overrides = {item.name: getattr(args, item.name) for item in FLAGS}
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"sipbridge: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level, config.log_format, config.log_redact, config.secrets)
    log = logging.getLogger("sipbridge")  # from here on in the configured format, redacted
    for warning in security_warnings(config, args.config):
        log.warning("%s", warning)
    try:
        asyncio.run(serve(config))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _agent(args: argparse.Namespace) -> int:
    from .agent.echo import run_agent

    try:
        listen = parse_host_port(args.listen, "--listen")
    except ConfigError as exc:
        print(f"sipbridge: {exc}", file=sys.stderr)
        return 2
    logs.setup(args.log_level)
    try:
        asyncio.run(run_agent(listen.host, listen.port, args.mode, resume_grace=args.resume_grace))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"sipbridge: cannot start the agent: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _agent(args)


if __name__ == "__main__":
    sys.exit(main())
