"""medlens.evaluate."""
