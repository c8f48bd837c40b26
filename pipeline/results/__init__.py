"""The results preset: several training seeds on a larger held-out set, aggregated with paired statistics.

:mod:`pipeline.results.run` trains and evaluates each seed in a temporary copy of the project and
collects the per-seed reports; sections (:mod:`pipeline.results.phase1`; phase two and LAQ add theirs
to ``SECTIONS`` in :mod:`pipeline.results.run`) turn them into ``reports/results/<section>.md`` and
``.json``; :mod:`pipeline.results.stats` holds the statistics.
"""
