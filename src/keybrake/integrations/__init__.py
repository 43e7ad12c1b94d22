"""Small helpers for vendor SDKs that cannot simply be given a base URL."""
