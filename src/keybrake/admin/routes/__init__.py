"""One FastAPI router per admin resource; `keybrake.admin.api.build_admin_app` assembles them."""
