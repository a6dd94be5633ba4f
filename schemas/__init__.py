"""The event contract: every event govclock accepts, validated, with its JSON Schema."""
