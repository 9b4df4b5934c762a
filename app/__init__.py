"""The HTTP API (FastAPI) and the database layer; never imports the ML stack."""
