"""flatarch."""
