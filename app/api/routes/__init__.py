"""One APIRouter per resource: `sweeps`, `hpo` (studies), `datasets`, `health` (healthz,
workers), `ui` (the dashboard and the API docs pages)."""
