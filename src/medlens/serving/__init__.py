"""`medlens serve`: the web app and JSON API over the same library functions as the CLI (top layer)."""
