"""medlens.audit: integrity, geometry outliers, class balance, duplicates/leakage, intensity clusters.

Public entry points: :func:`medlens.audit.run.audit`, :func:`medlens.audit.run.print_summary`,
:func:`medlens.audit.fix.apply_fix` and :func:`medlens.audit.fix.fix_manifest`.
"""
