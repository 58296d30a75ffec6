"""Small shared helpers (atomic files, JSON)."""
