"""Training: the Lightning loop, its callbacks, resume, learning curves and the typed config."""
