"""medlens.audit."""
