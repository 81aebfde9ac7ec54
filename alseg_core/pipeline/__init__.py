"""The pipeline: round layout, the steps, the round engine, the ``alseg run`` driver."""
