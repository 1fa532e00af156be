"""Every projection the hub runs, in the order they are applied."""

from __future__ import annotations

from projections import auth, base, hub_model, projects, servers, shares, users

ALL: tuple[base.Projection, ...] = (
    users.UsersProjection(),
    hub_model.GroupsProjection(),
    hub_model.TokensProjection(),
    hub_model.ServicesProjection(),
    hub_model.RolesProjection(),
    auth.OAuthClientsProjection(),
    auth.SignupsProjection(),
    servers.ServersProjection(),
    servers.RoutesProjection(),
    projects.ProjectsProjection(),
    shares.SharesProjection(),
)
