"""Auditing a dataset: integrity, geometry outliers, class balance, duplicates/leakage, intensity clusters.

Public entry points: :func:`medlens.auditing.run.audit`, :func:`medlens.auditing.run.print_summary`,
:func:`medlens.auditing.fix.apply_fix` and :func:`medlens.auditing.fix.fix_manifest`.
"""
