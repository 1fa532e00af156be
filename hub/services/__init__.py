"""Managed services: processes the hub starts, watches, restarts and stops (``supervisor``)."""
