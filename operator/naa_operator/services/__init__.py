"""The operator's use cases: the scheduling pass, the per-job reconcile, admission decisions,
leader election and metrics. Called by `handlers`; talks to the world only through `adapters`."""
