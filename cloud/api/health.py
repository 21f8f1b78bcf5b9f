"""`/health`: whether the database answers and, when the server knows, whether its ingest is
connected to the broker. 200 when the database answers, 503 when it does not.

Public (no token): load balancers and monitoring probe it, and it tells nothing but up or down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "down"]
    database: bool = Field(description="a query on the database succeeded")
    broker: bool | None = Field(
        description="every ingest worker is connected to the broker; null: not known here"
    )


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Is the cloud up?",
    responses={503: {"model": HealthOut, "description": "the database does not answer"}},
)
def health(request: Request, response: Response) -> HealthOut:
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = True
    except SQLAlchemyError:
        log.warning("health: the database does not answer", exc_info=True)
        database = False
    connected: Callable[[], bool] | None = request.app.state.broker_connected
    broker = None if connected is None else connected()
    if not database:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        state: Literal["ok", "degraded", "down"] = "down"
    else:
        state = "degraded" if broker is False else "ok"
    return HealthOut(status=state, database=database, broker=broker)
