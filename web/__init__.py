"""The HTTP surface of a worker: one module per concern, each registering its own routes."""
