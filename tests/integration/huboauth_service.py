"""A service written with JupyterHub's own HubOAuth helpers, unmodified: the whoami example.

Run as a process with the JupyterHub service environment; it answers the logged-in user's
model (as the hub's whoami returned it to HubOAuth) as JSON, and prints ``listening`` once
it accepts connections.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web


class WhoAmI(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """The logged-in user, as HubOAuth identified them."""

    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.get_current_user(), sort_keys=True))


def main() -> None:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    app = web.Application(
        [
            (prefix, WhoAmI),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    app.listen(url.port or 80, url.hostname or "127.0.0.1")
    print("listening", flush=True)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
