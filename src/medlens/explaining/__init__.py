"""Reasons behind each result: attribution maps, similar cases, out-of-distribution, faithfulness."""
