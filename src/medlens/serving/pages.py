"""Server-rendered pages: log in, the dashboard, datasets, runs (train, compare, evaluate, calibrate), a job's
live progress, one study's prediction and explanation, and the worklist with its readers' agreement.

Every page calls the same :class:`~medlens.serving.service.Service` the JSON API calls. Forms carry the
session's CSRF token as the field ``csrf``; a successful post redirects (303, POST/redirect/GET), a refused
one renders its page again with the one-line error. No inline script or style (the CSP forbids both):
behaviour comes from ``/static/app.js``, looks from ``/static/app.css``.
"""

from __future__ import annotations

from fastapi import APIRouter

from medlens.serving import pages_auth, pages_runs, pages_studies

#: The pages' router (app.py includes it): login and the dashboard, datasets/runs/jobs, studies/worklist.
router = APIRouter(include_in_schema=False)
router.include_router(pages_auth.router)
router.include_router(pages_runs.router)
router.include_router(pages_studies.router)
