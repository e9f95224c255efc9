"""No Django views: everything in the standalone server is a Channels route."""

urlpatterns: list = []
