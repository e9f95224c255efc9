"""The staff-only operations page: live connections, transports, queues and SSE streams of every worker."""

from __future__ import annotations

from collections import Counter

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from chat import ops
from chat.destinations import ROOM_TOPIC

ROOM_PREFIX = ROOM_TOPIC.split("{", 1)[0]


def summarize(reports: list[dict]) -> dict:
    """Totals across workers: connections per room, per user and per transport, queues, SSE streams."""
    per_room: Counter[str] = Counter()
    per_user: Counter[str] = Counter()
    per_transport: Counter[str] = Counter()
    rows = []
    for report in reports:
        for row in report["connections"]:
            rows.append({**row, "worker": report["worker"]})
            per_user[row["user"] or "?"] += 1
            per_transport[row["transport"]] += 1
            for destination in row["destinations"]:
                if destination.startswith(ROOM_PREFIX) and "." not in destination[len(ROOM_PREFIX) :]:
                    per_room[destination[len(ROOM_PREFIX) :]] += 1
    return {
        "workers": reports,
        "connections": sorted(rows, key=lambda r: (r["user"] or "", r["worker"])),
        "per_room": sorted(per_room.items()),
        "per_user": sorted(per_user.items()),
        "per_transport": sorted(per_transport.items()),
        "slow_consumer_disconnects": sum(r["slow_consumer_disconnects"] for r in reports),
        "sse_streams": sum(r["sse"].get("open_streams", 0) for r in reports),
    }


def operations_view(request: HttpRequest) -> HttpResponse:
    """HTML for people; ``?format=json`` for scripts (and the tests)."""
    summary = summarize(async_to_sync(ops.collect_reports)())
    if request.GET.get("format") == "json":
        return JsonResponse(summary)
    context = {**admin.site.each_context(request), "title": "Live operations", **summary}
    return TemplateResponse(request, "admin/chat_operations.html", context)
