"""The processes that train and their entry points: the Celery app (`celery_app`) and its thin
tasks (`tasks`), the real trainer (`run_executor`), the in-process sweep of `tftsweep sweep`
(`local_sweep`), `tftsweep serve` and `tftsweep worker` (`serve`, `http_protocol`,
`heartbeat`), the command line (`cli`) and `make demo` (`demo`)."""
