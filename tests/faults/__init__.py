"""Fault tests (`make test-faults`): separate API and worker processes killed, restarted and
starved, and what the database says afterwards."""
