"""Data: sources that produce images, the prepared format they share, splits, batches."""
