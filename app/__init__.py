"""The server side that never trains: the HTTP API (`app.api`), the service layer behind it and
behind every other entry point (`app.service`: a submission, the run pipeline, a report
build, a study, the reaper; each commits, then enqueues), the database layer (`app.db`), the
queue client (`app.queue`, `app.broker`), the settings (`app.settings`) and the HTTP
server's entry point (`app.serve`: `tftsweep serve`). Nothing here imports the ML stack (torch, lightning,
pytorch_forecasting, optuna): the API process starts light; the trainer is passed in.

See docs/architecture.md for the layers and one sweep's path through them.
"""
