"""Plain SQL, one module per domain: named query constants and get_/create_/update_ functions."""
