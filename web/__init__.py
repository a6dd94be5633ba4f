"""The HTTP surface of a worker: reading and refusing requests, one module per concern."""
