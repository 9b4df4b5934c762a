"""API tests: the FastAPI app through a test client over a temporary data root, a real SQLite
database and a recording queue (`tests.utils.fakes.RecordingQueue`)."""
