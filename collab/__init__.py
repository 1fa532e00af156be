"""Real-time collaboration (CRDT rooms over the y-websocket protocol). Not built yet: issue 7.

It will never import ``hub``: what it needs of the hub is handed to it by ``hub/app.py``.
"""
