"""Vendors defined by a TOML file, not by Python (docs/vendors.md, vendors defined by a file):
`definition.py` reads and checks one, `vendor.py` serves it, `load.py` registers them."""
