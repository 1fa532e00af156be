"""Read models built from the event log: the projections, their runner, rebuild and verify."""
