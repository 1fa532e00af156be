"""The hub's event types, one module per aggregate. Importing a module registers its events."""
