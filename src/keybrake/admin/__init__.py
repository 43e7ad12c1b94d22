"""The admin surface: keys, credentials, audit; shared by the HTTP API and the CLI."""
