"""Command line: ``python -m acr_webhook serve|provision``."""

from __future__ import annotations

import argparse
import importlib
import logging
import secrets
import sys

from acr_webhook.config import ConfigurationError, load_settings


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings()  # fail fast on a missing COSMOS_ENDPOINT, before listening
    from acr_webhook.local_host import serve

    function_app = importlib.import_module(args.app)
    key = settings.local_function_key or secrets.token_urlsafe(24)
    if not settings.local_function_key:
        print(f"LOCAL_FUNCTION_KEY is not set; generated key for this run: {key}", flush=True)
    serve(function_app.app, args.host, args.port, key)
    return 0


def _provision(_args: argparse.Namespace) -> int:
    from acr_webhook.repository import provision

    settings = load_settings()
    provision(settings)
    print(
        f"Database '{settings.cosmos_database}' and container '{settings.cosmos_container}' "
        f"are ready at {settings.cosmos_endpoint}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acr_webhook", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve function_app.py's HTTP functions locally")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--app", default="function_app", help="module that defines `app`")
    serve.set_defaults(run=_serve)
    provision = commands.add_parser("provision", help="create the database and container")
    provision.set_defaults(run=_provision)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The SDKs log every HTTP request at INFO; keep the console to this app's decisions.
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        return int(args.run(args))
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
