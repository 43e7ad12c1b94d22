"""Overview (`/console`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.console.web import Operator, operator, page

router = APIRouter(include_in_schema=False)


@router.get("/console")
async def overview(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """The overview page."""
    return page(request, "overview.html", op, title="Overview")
