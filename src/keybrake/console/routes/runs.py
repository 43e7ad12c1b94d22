"""Runs (`/console/runs`) and one run's timeline (`/console/runs/{agent_run_id}`, its export).

The timeline reads the run's rows on the audit table's run index (`ix_audit_run`: agent_run_id,
then id, and ids are time-ordered), oldest first, PAGE at a time; paging moves by id, so the order
is exact across pages. The list of recent runs comes from the latest RECENT_WINDOW audit rows
only (a bounded walk of the id index), never from a scan of the table. A run id may hold any
character (`/` too, percent-encoded in the path); one ending in `/export` is reached through the
audit search instead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin.audit import decode_cursor, encode_cursor
from keybrake.admin.errors import ApiError
from keybrake.console.audit_view import export_response, typed
from keybrake.console.web import Operator, operator, page, run_path, runtime, see_other
from keybrake.store.base import AuditQuery

router = APIRouter(include_in_schema=False)
PAGE = 500  # calls per timeline page
RECENT_WINDOW = 2_000  # latest audit rows the recent-runs list looks at
RECENT_RUNS = 20
MAX_RUN_ID = 128  # the audit column's width


@router.get("/console/runs")
async def runs_page(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """A form to open one run's timeline, and the runs among the latest audit rows."""
    run_id = request.query_params.get("agent_run_id", "").strip()
    problem = ""
    if run_id and len(run_id) > MAX_RUN_ID:
        problem = f"An agent run id has at most {MAX_RUN_ID} characters."
    elif run_id:
        return see_other(run_path(run_id))
    recent = await runtime(request).audit_store.recent_runs(RECENT_WINDOW, RECENT_RUNS)
    return page(
        request, "runs.html", op, status=422 if problem else 200, title="Runs", problem=problem,
        typed=run_id, recent=recent, run_path=run_path, window=RECENT_WINDOW,
    )  # fmt: skip


@router.get("/console/runs/{agent_run_id:path}/export")
async def run_export(agent_run_id: str, request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """Every call of the run, oldest first, as CSV or JSON Lines (`format`): the API's export with
    `agent_run_id`, downloaded as keybrake-run-<run id>.<format>."""
    params = typed(request, ("format",))
    q = AuditQuery(agent_run_id=agent_run_id)
    return await export_response(request, op, q, params.get("format", "csv"), f"keybrake-run-{agent_run_id}")


@router.get("/console/runs/{agent_run_id:path}")
async def run_timeline(agent_run_id: str, request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """Every call of one run, oldest first, PAGE at a time (`after`: later calls than a cursor;
    `before`: earlier ones), with the run's totals. A malformed cursor is shown as a problem."""
    rt = runtime(request)
    problem, status = "", 200
    rows: list[dict[str, Any]] = []
    earlier = later = ""
    try:
        params = typed(request, ("after", "before"))
        q = AuditQuery(agent_run_id=agent_run_id, limit=PAGE + 1)
        if "before" in params:  # the page just before a cursor: read newest first, shown oldest first
            rows = list(reversed(await rt.audit_store.query_audit(replace(q, cursor=decode_cursor(params["before"])))))
            more_before, more_after = len(rows) > PAGE, True
            rows = rows[-PAGE:]
        else:
            after = decode_cursor(params["after"])[1] if "after" in params else None
            rows = await rt.audit_store.query_audit(replace(q, after_id=after, ascending=True))
            more_before, more_after = after is not None, len(rows) > PAGE
            rows = rows[:PAGE]
        if rows and more_before:
            earlier = _page_link(agent_run_id, before=encode_cursor(rows[0]["ts"], rows[0]["id"]))
        if rows and more_after:
            later = _page_link(agent_run_id, after=encode_cursor(rows[-1]["ts"], rows[-1]["id"]))
    except ApiError as exc:
        if exc.status >= 500:
            raise
        problem, status = exc.message, exc.status
    totals = await rt.audit_store.audit_run_totals(agent_run_id)  # no call (yet): the page says so, 200
    return page(
        request, "run.html", op, status=status, title=f"Run {agent_run_id}", problem=problem, run_id=agent_run_id,
        rows=rows, totals=totals, earlier=earlier, later=later, first=_page_link(agent_run_id) if earlier else "",
        csv_link=f"{run_path(agent_run_id)}/export?format=csv",
        jsonl_link=f"{run_path(agent_run_id)}/export?format=jsonl",
        audit_link="/console/audit?" + urlencode({"agent_run_id": agent_run_id}),
    )  # fmt: skip


def _page_link(agent_run_id: str, **query: str) -> str:
    return run_path(agent_run_id) + ("?" + urlencode(query) if query else "")
