"""Numbered, forward-only SQL migrations and the runner that applies them."""
