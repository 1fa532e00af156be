"""Every projection the hub runs, in the order they are applied."""

from __future__ import annotations

from projections import base, users

ALL: tuple[base.Projection, ...] = (users.UsersProjection(),)
