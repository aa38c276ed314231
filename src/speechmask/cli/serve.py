"""``speechmask serve``: the local web page and HTTP API."""

from __future__ import annotations

import argparse
import os

from .common import EXIT_OK, UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    se = sub.add_parser("serve", help="local web page + HTTP API: drop files, hear before/after, "
                        "denoise the microphone live")
    se.add_argument("--host", default="127.0.0.1",
                    help="interface to bind (default 127.0.0.1: this machine only)")
    se.add_argument("--port", type=int, default=8000)
    se.add_argument("--model", default=None,
                    help="exported .onnx or .pt checkpoint (default: shipped model, ONNX)")
    se.add_argument("--max-upload-mb", type=float, default=100.0,
                    help="largest accepted upload in MB (default 100)")
    se.add_argument("--workers", type=int, default=1,
                    help="files enhanced at once, one core each (default 1)")
    se.add_argument("--token", default=None,
                    help="require this secret on every request (Authorization: Bearer or "
                    "?token=); also read from $SPEECHMASK_TOKEN")
    se.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..serve import ServeConfig, ServeError
        from ..serve import run as serve
    except ImportError as err:  # fastapi / uvicorn are the [serve] extra
        raise UserError(f"`speechmask serve` needs the web server packages ({err.name} missing):"
                        " pip install 'speechmask[serve]'") from None
    try:
        config = ServeConfig(host=args.host, port=args.port, model=args.model,
                             max_upload_mb=args.max_upload_mb, workers=args.workers,
                             token=args.token or os.environ.get("SPEECHMASK_TOKEN") or None)
    except ServeError as err:
        raise UserError(str(err)) from None
    print(f"speechmask serve: {config.url}" + (" (add ?token=YOUR_TOKEN)" if config.token else "")
          + "  API docs: " + config.url + "docs  (Ctrl+C stops)", flush=True)
    serve(config)
    return EXIT_OK
