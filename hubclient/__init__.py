"""chronohub project: a pure client of the hub (REST and git) for sharing projects."""
