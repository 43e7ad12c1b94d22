"""One FastAPI router per console page; `keybrake.console.mount` adds them to the admin app."""
