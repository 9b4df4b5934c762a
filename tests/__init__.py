"""The test suite: `unit` (core, fast), `api` (the app through a test client, a real SQLite
database), `worker` (the run engine, tasks and tiny real trainings), `e2e` (real server and
worker processes, an installed package, Redis/PostgreSQL/S3 when present), `ui` (the dashboard
in a headless browser), `faults` (killed and restarted processes, `make test-faults`), and
`utils` (factories and test doubles shared by all of them)."""
