"""End-to-end tests: real `tftsweep serve` and Celery worker processes on loopback, an installed
(non-editable) package, and the production stack (Redis, PostgreSQL, an S3 server) when
`scripts/services.sh` finds them."""
