"""The proxy surface: request model, pipeline, upstream client, ASGI adapter."""
