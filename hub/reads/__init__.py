"""Read models the layers above share: typed lookups over the projections' tables.

One module per resource (users, groups, tokens, roles), each with its ``.sql`` beside it. A
page and the REST API that show the same thing read it through the same function here, and a
lookup that must find its row (``users.require``) raises the hub's ``NotFound`` in one place.
"""
