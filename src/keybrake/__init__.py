"""Keybrake: a self-hosted governance proxy that puts the brakes on AI agents' API keys."""

__version__ = "0.1.0"
