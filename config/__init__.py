"""Configuration loaders: settings from the environment and the YAML files they name."""
