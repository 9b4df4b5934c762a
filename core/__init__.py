"""tftsweep's pure domain layer: config schema (`config`, `hpo_config`), the OFAT plan (`plan`),
merge rules (`merge`), datasets and features (`datasets`, `features`, `feature_sets`),
training (`training`), runs as a trainer sees them (`runs`), report tables and statistics
(`reports`, `significance`, `summary`, `drift`, `sweep_report`, `plots`, `compare`), HPO
(`hpo`), the dry run's estimate (`dry_run`), the store and the path layout (`store`, `paths`,
`files`, `sweep_folder`), safe names (`names`), the shipped configs (`shipped`, `configs/`) and
the domain errors (`errors`).

Nothing here imports the web framework, the queue or the ORM. Heavy ML imports
(torch, lightning, pytorch_forecasting, optuna) live only in `core.training` and
`core.hpo`, which the API never reaches.
"""
