"""Workers: the Celery app and its thin tasks, the in-process sweep runner and the CLI."""
