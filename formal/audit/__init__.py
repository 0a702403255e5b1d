"""``formal audit``: what a training run's floating-point arithmetic did at its kinks.

:mod:`formal.audit.mlp` trains small MLPs with numpy in a working precision;
:mod:`formal.audit.kinks` classifies float kink touches exactly (the one
place to plug another float pass in); :mod:`formal.audit.run` is the step
loop and the JSON log; :mod:`formal.audit.sources` the three sources;
:mod:`formal.audit.tables` the published tables and :mod:`formal.audit.sweep`
their Dask sweeps.  See docs/audit.md.
"""
