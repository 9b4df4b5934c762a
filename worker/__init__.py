"""The processes that train and their entry points: the Celery app (`celery_app`) and its thin
tasks (`tasks`), the real trainer (`trainer`), the in-process sweep of `tftsweep sweep`
(`local_sweep`), the Celery workers of `tftsweep worker` and the embedded one `tftsweep serve`
keeps alive (`supervisor`, `lifetime`, `heartbeat`), the command line (`cli`) and `make demo`
(`demo`). The HTTP server itself is the app's (`app.serve`)."""
