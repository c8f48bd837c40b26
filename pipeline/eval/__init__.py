"""Evaluation: dataset report, phase-one/two metrics and baselines, VGGT/LAQ metrics, and the report figures."""
