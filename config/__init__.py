"""Configuration: `default.toml` and the frozen settings model it loads into."""
