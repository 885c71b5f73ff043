"""The REST gateway: FastAPI over the AugmentationJob CRs (see `app.create_app`).

Run it with `python -m roboaug.api.gateway` (settings: `roboaug.api.gateway.settings`).
"""

from .app import create_app

__all__ = ["create_app"]
