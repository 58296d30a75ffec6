"""medlens.tasks."""
