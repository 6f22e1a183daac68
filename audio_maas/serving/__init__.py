"""The framework-free parts of serving: what a served model is, dynamic batching, settings and
the live streams' metrics. No KServe, no web framework: the ``kserve`` layer adapts these."""
