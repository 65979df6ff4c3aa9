"""The `ferry` command: a thin client of the HTTP API (plus the local lab)."""
