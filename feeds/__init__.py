"""Feed polling I/O: fetching feed sources over HTTP (timeouts, body cap, conditional GET)."""
