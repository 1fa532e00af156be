"""The subcommands of ``chronohub project`` (one module per group) and what they share."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from hubclient import api, config, errors, git, output


@dataclass
class Context:
    """What every command gets: the environment, where to print, and the hub options."""

    out: output.Output
    hub_option: str | None = None
    token_option: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def hub(self, *, need_token: bool = True) -> config.Hub:
        """The hub to talk to (``config.discover``)."""
        return config.discover(
            self.hub_option, self.token_option, self.environ, need_token=need_token
        )

    def maybe_hub(self) -> config.Hub | None:
        """The hub if one is configured (commands that work on any git URL need none)."""
        try:
            return self.hub(need_token=False)
        except errors.Usage:
            return None

    def api(self, hub: config.Hub) -> api.Api:
        """The REST API of ``hub``."""
        return api.Api(hub)


# What the hub's git answers mean, by the words git shows of them.
NETWORK_WORDS = (
    "Could not resolve host",
    "Failed to connect",
    "Connection refused",
    "Connection timed out",
    "Operation timed out",
    "Couldn't connect",
    "Empty reply from server",
)


def git_failure(exc: git.GitError, full_name: str, hub: config.Hub | None) -> errors.ClientError:
    """The typed error of a failed git transfer with the hub (or another remote)."""
    said = exc.stderr
    where = hub.url if hub is not None else "the remote"
    if any(word in said for word in NETWORK_WORDS):
        return errors.Unreachable(f"cannot reach {where}: {exc.message}")
    if "read-only access" in said:
        return errors.Access(f"you have read access only to {full_name}: ask its owner for write")
    if "renamed to" in said:
        return errors.Gone(said.strip().splitlines()[-1].removeprefix("remote: "))
    if "not found" in said and hub is not None:
        return errors.Gone(
            f"project {full_name} is gone from {hub.url} (deleted, or you lost access);"
            " your checkout is intact"
        )
    if (
        "credentials are needed" in said
        or "Authentication failed" in said
        or "could not read Username" in said
        or "401" in said
    ):
        source = hub.source if hub is not None else "no token"
        return errors.Access(
            f"{where} refused the token ({source}): it was revoked, has expired or was never"
            f" valid; run chronohub login {where}"
        )
    if "[rejected]" in said or "non-fast-forward" in said or "fetch first" in said:
        return errors.NeedsPull(
            f"{full_name} has changes you do not have yet: run chronohub project pull, then"
            " push again"
        )
    return errors.Failed(exc.message)


def api_of(ctx: Context, hub: config.Hub) -> api.Api:
    """The REST API of ``hub`` (a seam for tests)."""
    return ctx.api(hub)
