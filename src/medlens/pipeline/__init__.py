"""The steps a user asks for, composed one layer above training, evaluation and auditing.

``train`` (the public ``medlens.train``) runs audit-fix → train → evaluate → report; ``learning_curve`` trains
on growing fractions; ``run_demo`` is ``medlens demo``. The CLI, the Python API and the service call these,
so no lower layer needs to import another of its level (training never imports evaluation or auditing).
"""
