"""medlens.train."""
