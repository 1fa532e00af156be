"""The event log: event models, the store and subscriptions. Imports nothing else of chronohub."""
