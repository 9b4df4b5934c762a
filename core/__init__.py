"""tftsweep's pure domain layer: configs, plans, merges, datasets, training, reports.

Nothing here imports the web framework, the queue or the ORM. Heavy ML imports
(torch, lightning, pytorch_forecasting, optuna) live only in `core.training` and
`core.hpo`, which the API never reaches.
"""
