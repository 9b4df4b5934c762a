"""The database layer: SQLAlchemy models (`models`), engines and sessions (`session`),
migrations applied from code (`migrate`), the sweep and run state machine as conditional
updates (`lifecycle`: submit, claim, lease, finish, release, cancel, retry, reap), reads of
sweeps and runs (`sweeps`), sweep revisions for the API's cache (`revisions`) and worker
heartbeats (`workers`).

Workers and the command line may import this package, never `app.api`.
"""
