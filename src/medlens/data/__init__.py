"""Manifests, ingest adapters, splits, preprocessing and cached datasets."""
