"""Backups of a whole hub: a pg_dump of its database plus projects' git objects, and restore."""
