"""Executors: where task commands run. Each module can be read alone."""
