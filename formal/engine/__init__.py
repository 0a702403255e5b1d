"""Engine layer: interpreters over the graph, the kink graph, linearity, verdicts."""
