"""Serve the gateway: ``python -m gateway [--host H] [--port P]`` (defaults from the settings)."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from shopbot.logs import setup_logging
from shopbot.settings import get_settings

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    ap = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default=settings.host)
    ap.add_argument("--port", type=int, default=settings.port)
    args = ap.parse_args(argv)
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    setup_logging(settings.log_level, settings.log_format)
    logging.getLogger(__name__).info("gateway listening", extra={"url": settings.web_url})
    # SIGTERM: stop accepting, close the sockets with 1001 (app.on_shutdown), finish requests in flight
    # for at most shutdown_timeout_s, exit.
    web.run_app(
        create_app(settings),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":
    main()
