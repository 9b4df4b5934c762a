"""The service layer: what a submission, a run, a report build, a study and the reaper do,
step by step, over the database layer (`app.db`), the queue (`app.queue`) and core. Every
service writes and commits, then sends.

`submission` (plan, record, adopt, send a sweep), `runs` (the one run pipeline, `train_run`),
`reports` (one report build at a time, `build_reports`), `sweeps` (cancel, retry), `studies`
(HPO studies) and `reaper` (recovery from the database). The HTTP routes, the Celery tasks
and the `tftsweep` commands are entry points of a few lines over these modules.
"""
