"""Glue of the Switchover subgraph: settings, the app factory and the command line."""
