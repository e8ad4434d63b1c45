"""Settings: one typed, validated object built once from TOML + environment."""
