"""HTTP handlers, one module per route group."""
