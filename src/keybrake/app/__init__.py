"""The ASGI application (`KeybrakeApp`), built by a function from a settings object (nothing at import).

`asgi` routes each request: admin paths to the admin app, `/_keybrake/self` to `self_view`,
everything else through the proxy pipeline, request bodies held within `body.BodyBudget`;
its lifespan starts and stops the background jobs (keybrake.jobs).
"""

from keybrake.app.asgi import KeybrakeApp, is_admin_path

__all__ = ["KeybrakeApp", "is_admin_path"]
