"""Core layer: machine numbers, exact arrays, activations and presets, the network IR."""
