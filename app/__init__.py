"""The server side that never trains: the HTTP API (`app.api`), the service functions behind it
(`app.services`: commit, then enqueue; `app.engine`: a submission, a run's pipeline, a report
build), the database layer (`app.db`), the queue client (`app.queue`, `app.broker`) and the
settings (`app.settings`). Nothing here imports the ML stack (torch, lightning,
pytorch_forecasting, optuna): the API process starts light; the trainer is passed in.

See docs/architecture.md for the layers and one sweep's path through them.
"""
