"""One module per DVC stage: the stage's whole work, called by its Typer shell in ``stages/``.

``pipeline/steps/<stage>.py`` has ``run(...)``: the only code that knows the stage's output paths,
manifests and MLflow run (``pipeline/tracking.py``). Lower layers take folders and objects as arguments.
"""
