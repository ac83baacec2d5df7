"""``sqlcoder-web``: start the page (uvicorn serving the Starlette app) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvicorn

from .app import create_app
from .settings import parse_args

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}{settings.root_path}"
    if settings.single_user:
        # The token is the only thing between another local user and this role's data.
        print(f"sqlcoder-web: open {base}/login?token={app.state.single_user_token}", flush=True)
    else:
        print(f"sqlcoder-web: open {base}/ and log in with your PostgreSQL role", flush=True)
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"sqlcoder-web: WARNING: listening on {settings.host}, not only this host; serve the page "
              "through a TLS reverse proxy (see README, 'The browser page')", file=sys.stderr, flush=True)
    # access_log off: uvicorn's would write query strings (questions, a single-user token);
    # security.SecurityMiddleware logs method, path and status instead.
    uvicorn.run(app, host=settings.host, port=settings.port, root_path=settings.root_path,
                proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
                access_log=False, server_header=False, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
