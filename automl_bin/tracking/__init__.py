"""Tracking, one home for the MLflow tracker plugin and the CLI.

`automl_bin.tracking.names` holds the conventions (where the store is, the tags a tracked run
carries, how metric and param keys are spelled, which params a run records);
`automl_bin.tracking.store` reads tracked runs back for commands (``compare``, ``summary``,
``export``, ``run --from-run``/``--resume``). MLflow is imported lazily by both.
"""
