"""``sqlcoder-web``: start the page (uvicorn serving the Starlette app) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .app import create_app
from .server import serve
from .settings import parse_args

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    if settings.single_user:
        # The token is the only thing between another local user and this role's data; each link works once.
        app.state.single_user_link.announce()
    else:
        print(f"sqlcoder-web: open {settings.base_url}/ and log in with your PostgreSQL role", flush=True)
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"sqlcoder-web: WARNING: listening on {settings.host}, not only this host; serve the page "
              "through a TLS reverse proxy (see README, 'The browser page')", file=sys.stderr, flush=True)
    serve(app, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
