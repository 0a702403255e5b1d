"""Theorems layer: executable statements of the published results and their evidence."""
