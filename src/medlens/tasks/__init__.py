"""Tasks own their loss, metrics and prediction format; the training loop is shared."""
