"""Counting layer: exact, conditional and sampled counts over machine-number grids."""
