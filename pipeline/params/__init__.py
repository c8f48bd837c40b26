"""Typed models of ``params.yaml``, one module per section (the lowest layer above ``pipeline/io``).

``params.yaml`` is the one source of values and documentation; the models here hold only types,
choices and constraints (no defaults). Import a section's model from its module
(``from pipeline.params.train import Phase1Params``) so a stage depends only on the sections it
reads; :mod:`pipeline.params.sections` lists them all for the ``check_params`` stage.
"""
