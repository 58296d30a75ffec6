"""Hostile, broken and duplicated input: a corpus of cases generated at test time, run through the CLI."""
