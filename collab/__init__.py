"""Real-time collaboration: CRDT rooms over the y-websocket protocol, persisted in PostgreSQL.

``protocol`` parses and builds y-websocket messages; ``room`` is one pycrdt document and its
connections; ``rooms`` opens, unloads and compacts the rooms of a process and relays between
processes (``relay``); ``persistence`` is the SQL side (``collab.sql``); ``server`` is the
aiohttp endpoint; ``client`` a Python client. It never imports ``hub``: what it needs of the
hub (who connects, may they read or write) is the ``access.Gatekeeper`` that ``hub/app.py``
hands it.
"""
