"""The FastAPI application (`app.api.main.create_app`): one router per resource in `routes/`,
request and response models (`models`), dependencies (`deps`), error mapping (`errors`),
security middleware (`security`), cached report tables (`tables`, `cache`), files served from
the store (`files`), Prometheus metrics (`metrics`), and the dashboard's templates and static
files. Routes stay thin: they validate, call `app.service`, and shape answers.
"""
