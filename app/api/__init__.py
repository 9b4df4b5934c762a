"""FastAPI application: routes over the sweep services; JSON everywhere, OpenAPI at /docs."""
