"""The hub application: HTTP API, configuration, database, CLI. ``hub/app.py`` wires it together."""
