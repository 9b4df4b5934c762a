"""Worker tests: the run engine, Celery tasks, `tftsweep sweep`, the store, HPO and report
builds, with fake trainers or tiny real trainings (marked slow)."""
