"""Writes deploy/grafana/chat-dashboard.json (run: python deploy/grafana/build_dashboard.py); the JSON is committed.

Every panel's PromQL runs against a real Prometheus in tests/observability/test_prometheus.py.
"""

from __future__ import annotations

import json
from pathlib import Path

RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


def q(expr: str, legend: str = "") -> dict:
    return {"expr": expr, "legendFormat": legend, "datasource": DS}


def p99(metric: str, by: str = "") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile(0.99, sum by ({group}) (rate({metric}_bucket[{RATE}])))"


def p50(metric: str) -> str:
    return f"histogram_quantile(0.5, sum by (le) (rate({metric}_bucket[{RATE}])))"


ROWS: list[tuple[str, list[tuple[str, str, list[dict]]]]] = [
    (
        "Connections",
        [
            (
                "STOMP connections open, by transport",
                "short",
                [q("sum by (transport) (chat_connections_open)", "{{transport}}")],
            ),
            (
                "SockJS sessions open, by transport",
                "short",
                [q("sum by (transport) (chat_sockjs_sessions_open)", "{{transport}}")],
            ),
            ("SSE streams open", "short", [q("sum(notifications_sse_streams_open)", "streams")]),
            (
                "Workers up / draining",
                "short",
                [q('sum(up{job="chat"})', "up"), q("sum(chat_worker_draining)", "draining")],
            ),
        ],
    ),
    (
        "Traffic",
        [
            (
                "CONNECTs by outcome",
                "reqps",
                [q(f"sum by (outcome) (rate(chat_stomp_connects_total[{RATE}]))", "{{outcome}}")],
            ),
            (
                "Frames received, by command",
                "reqps",
                [q(f"sum by (command) (rate(chat_stomp_frames_received_total[{RATE}]))", "{{command}}")],
            ),
            (
                "Frames sent, by command",
                "reqps",
                [q(f"sum by (command) (rate(chat_stomp_frames_sent_total[{RATE}]))", "{{command}}")],
            ),
            ("Deliveries", "reqps", [q(f"sum(rate(chat_stomp_deliveries_total[{RATE}]))", "MESSAGE frames/s")]),
            (
                "SSE events and replays",
                "reqps",
                [
                    q(f"sum(rate(notifications_sse_events_sent_total[{RATE}]))", "events/s"),
                    q(f"sum(rate(notifications_sse_replays_total[{RATE}]))", "replays/s"),
                ],
            ),
            (
                "Notifications and tickets",
                "reqps",
                [
                    q(f"sum(rate(notifications_created_total[{RATE}]))", "notifications/s"),
                    q(f"sum by (outcome) (rate(notifications_tickets_total[{RATE}]))", "tickets {{outcome}}"),
                ],
            ),
        ],
    ),
    (
        "Latency",
        [
            (
                "SEND → RECEIPT",
                "s",
                [q(p50("chat_stomp_send_receipt_seconds"), "p50"), q(p99("chat_stomp_send_receipt_seconds"), "p99")],
            ),
            (
                "Database write batches: commit time",
                "s",
                [q(p50("chat_writer_commit_seconds"), "p50"), q(p99("chat_writer_commit_seconds"), "p99")],
            ),
            (
                "Database write batches: size",
                "short",
                [q(p50("chat_writer_batch_units"), "p50"), q(p99("chat_writer_batch_units"), "p99")],
            ),
            ("Redis PUBLISH round trip", "s", [q(p99("chat_redis_publish_seconds"), "p99")]),
            ("SSE replay size", "short", [q(p99("notifications_sse_replay_events"), "p99 events")]),
        ],
    ),
    (
        "Errors",
        [
            (
                "Slow consumers and heart-beat timeouts",
                "short",
                [
                    q(f"sum(increase(chat_stomp_slow_consumer_disconnects_total[{RATE}]))", "slow consumers"),
                    q(f"sum(increase(chat_stomp_heartbeat_timeouts_total[{RATE}]))", "heart-beat timeouts"),
                ],
            ),
            (
                "Refused CONNECTs",
                "reqps",
                [
                    q(
                        f'sum by (outcome) (rate(chat_stomp_connects_total{{outcome!="accepted"}}[{RATE}]))',
                        "{{outcome}}",
                    )
                ],
            ),
            (
                "Redis",
                "short",
                [
                    q("min(chat_redis_up)", "up (min over workers)"),
                    q(f"sum(increase(chat_redis_reconnects_total[{RATE}]))", "reconnects"),
                    q(f"sum(rate(chat_redis_publish_failures_total[{RATE}]))", "publish failures/s"),
                ],
            ),
            (
                "Write batches failed",
                "short",
                [q(f"sum(increase(chat_writer_batch_failures_total[{RATE}]))", "failed")],
            ),
        ],
    ),
    (
        "Saturation",
        [
            ("Send-queue depth (frames)", "short", [q(p99("chat_stomp_send_queue_depth"), "p99")]),
            ("Event-loop lag", "s", [q(p99("chat_event_loop_lag_seconds", "instance"), "{{instance}} p99")]),
            ("Resident memory", "bytes", [q("sum by (instance) (chat_process_resident_memory_bytes)", "{{instance}}")]),
        ],
    ),
]


def build() -> dict:
    panels: list[dict] = []
    y = 0
    next_id = 1
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})  # fmt: skip
        next_id += 1
        y += 1
        for index, (name, unit, targets) in enumerate(row):
            refs = [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)]
            panels.append({
                "type": "timeseries", "title": name, "id": next_id, "datasource": DS, "targets": refs,
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "gridPos": {"h": 8, "w": 8, "x": (index % 3) * 8, "y": y + (index // 3) * 8},
            })  # fmt: skip
            next_id += 1
        y += 8 * ((len(row) + 2) // 3)
    return {
        "title": "Chat server",
        "uid": "chat-server",
        "tags": ["chat", "stomp", "daphne"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


if __name__ == "__main__":
    target = Path(__file__).with_name("chat-dashboard.json")
    target.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
