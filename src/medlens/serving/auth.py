"""Who may call the service: one API token, browser sessions, CSRF tokens, and a brake on guessing.

- The token comes from ``MEDLENS_API_TOKEN`` when set; otherwise one is made at first start, printed once,
  and only its salted SHA-256 is stored (a 256-bit random token needs no slow hash; a short token from the
  environment is the operator's choice).
- The browser logs in with the token once; a random session id in an HttpOnly, SameSite=Strict cookie
  carries it after that, and every form and page request that changes state sends the session's CSRF token.
- Failed logins are limited per client address (5 a minute), answered 429 after that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from medlens.serving.db import SessionRow, Setting, utcnow

TOKEN_ENV = "MEDLENS_API_TOKEN"
COOKIE = "medlens_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SESSION_HOURS = 12  # a browser session lasts a working day; then log in again
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW_S = 60.0


def _digest(token: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()


def ensure_token(db: Session) -> str | None:
    """Store the hash of the service token; return the new token when one was made now (print it once), else
    None. An environment token replaces a stored one."""
    env = os.environ.get(TOKEN_ENV)
    stored = db.get(Setting, "token_hash")
    if env:
        salt = secrets.token_hex(16)
        _put(db, "token_salt", salt)
        _put(db, "token_hash", _digest(env, salt))
        db.commit()
        return None
    if stored is not None:
        return None
    token = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    _put(db, "token_salt", salt)
    _put(db, "token_hash", _digest(token, salt))
    db.commit()
    return token


def check_token(db: Session, token: str | None) -> bool:
    """True when ``token`` is the service token (constant-time comparison)."""
    if not token:
        return False
    salt, stored = db.get(Setting, "token_salt"), db.get(Setting, "token_hash")
    if salt is None or stored is None:
        return False
    return hmac.compare_digest(_digest(token, salt.value), stored.value)


def new_session(db: Session) -> SessionRow:
    row = SessionRow(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
    db.add(row)
    db.commit()
    return row


def get_session(db: Session, session_id: str | None) -> SessionRow | None:
    if not session_id or len(session_id) > 64:
        return None
    row = db.execute(select(SessionRow).where(SessionRow.id == session_id)).scalar_one_or_none()
    if row is not None and utcnow() - row.created > timedelta(hours=SESSION_HOURS):
        end_session(db, session_id)
        return None
    return row


def end_session(db: Session, session_id: str | None) -> None:
    if session_id:
        db.execute(delete(SessionRow).where(SessionRow.id == session_id))
        db.commit()


def csrf_ok(session: SessionRow, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, str(sent))


class LoginLimiter:
    """At most ``MAX_FAILED_LOGINS`` failed logins per client in a sliding minute."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window_s: float = FAILED_LOGIN_WINDOW_S) -> None:
        self.limit, self.window = limit, window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        with self._lock:
            q = self._failures[client]
            now = time.monotonic()
            while q and now - q[0] > self.window:
                q.popleft()
            return len(q) >= self.limit

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures[client].append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def _put(db: Session, key: str, value: str) -> None:
    row = db.get(Setting, key)
    if row is None:
        db.add(Setting(key=key, value=value))
    else:
        row.value = value
