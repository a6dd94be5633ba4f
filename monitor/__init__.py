"""The composition root: the Faust app with its agents and routes, and the live run."""
