"""Evaluation: metrics with bootstrap CIs, plots, summary.json, predictions.csv, report.html, compare."""
