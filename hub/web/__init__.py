"""The web layer: request and reply bodies, pagination, the client's address and the HTML page
renderer with its templates and static files. Imports nothing above the hub's root modules."""
