"""Gateway-only response shapes; they compose the shared models and redefine no field."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from roboaug.api.models import AugmentationStatusResponse


class AugmentationJobPage(BaseModel):
    """One page of GET /v1/augmentation."""

    items: list[AugmentationStatusResponse] = Field(description="Jobs on this page (each as the status response).")
    next_cursor: Optional[str] = Field(None, description="Pass as `cursor` for the next page; null on the last page.")
