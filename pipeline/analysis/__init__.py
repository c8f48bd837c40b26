"""Research analyses over a finished run's data and outputs (``python -m pipeline.analysis.<name>``): questions
that need the stages' code but are not stages. Each writes its report under ``reports/results/``."""
