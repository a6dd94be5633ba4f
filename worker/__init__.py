"""What one worker process shares: the context of agents and routes, the core per partition."""
