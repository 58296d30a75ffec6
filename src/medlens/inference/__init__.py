"""Inference: run a trained model on new files (classes, masks, boxes), with the run's own preprocessing."""
