"""HTTP handlers, grouped by resource, and the one route table."""
