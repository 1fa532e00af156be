"""Git projects: who may use them, their objects on disk, refs in PostgreSQL, the push
transaction and git's smart HTTP protocol (a capability of the hub, below its entry points)."""
