"""Hyperparameter search (``medlens search``): Optuna grid or TPE trials, each a ``medlens.train`` run."""
