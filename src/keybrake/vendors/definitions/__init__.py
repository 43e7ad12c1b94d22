"""Built-in vendor definitions (`*.toml`, docs/vendors.md, vendors defined by a file), loaded
like an operator's files when `keybrake.vendors` is imported."""
