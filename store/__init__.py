"""The store: every SQL statement of Switchover lives in this package."""
