"""Background jobs: reconciliation, retention, alert delivery, housekeeping."""
