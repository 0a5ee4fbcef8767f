"""The pipeline: one config, one run layout, stages skipped when their config hash is unchanged."""
