"""``formal bench``: speed as ratios against baselines run in the same process."""
