"""The database layer: SQLAlchemy models (`models`), engines and sessions (`session`),
migrations applied from code (`migrate`, the one place they are applied), the run state
machine as conditional updates (`lifecycle`: claim, lease, finish, release, cancel, retry,
reap), the rows a submission writes (`recording`), the report build's lock (`reports`), the
study state machine (`studies`), reads of sweeps and runs (`sweeps`), sweep revisions for the
API's cache (`revisions`) and worker heartbeats (`workers`).

It persists and runs conditional updates; what to write is decided by `app.service`.
Workers and the command line may import this package, never `app.api`.
"""
