"""Report layer: text tables and plots of verdicts, counts and theorem checks."""
