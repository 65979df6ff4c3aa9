"""Use cases: register hosts, create VMs, plan and run migrations.  Owns the DB
session and the background workers; the API and CLI only call into here."""
