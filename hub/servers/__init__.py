"""Single-user servers: the manager (start, watch, stop, re-adopt), the pure rules of a server's
life, the spawner interface and the local spawner, and whose account users' code runs as
(isolation, the bubblewrap sandbox)."""
