"""The scheduler process that drives deployments through their lifecycle."""
