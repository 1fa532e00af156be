"""chronohub project: a pure client of the hub (REST and git) that pushes, checks out and pulls projects."""
