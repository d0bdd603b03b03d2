"""A trace from Jaeger's query API drawn as the familiar waterfall, in one self-contained HTML page.

Jaeger's web UI is a separate npm project that the Go module does not embed (a Go-built ``jaeger`` serves a
placeholder page), and no registry here carries its assets. So the picture of an order's trace in the README is
drawn by this module from the same JSON the UI reads (``/api/traces/{id}``), laid out as the UI's trace view lays it
out: one row per span in tree order, indented under its parent, a bar from its start for its duration, coloured by
service. ``make screenshot`` renders it with headless Chromium.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from typing import Any

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _parent_id(span: Mapping[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
    return str(refs[0]["spanID"]) if refs else None


def rows(trace: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(depth, span)`` in tree order (children by start time); a span whose parent is missing is a root."""
    spans = {str(s["spanID"]): s for s in trace["spans"]}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans.values():
        parent = _parent_id(span)
        children.setdefault(parent if parent in spans else None, []).append(span)

    def walk(parent: str | None, depth: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
        for span in sorted(children.get(parent, []), key=lambda s: (s["startTime"], s["operationName"])):
            yield depth, span
            yield from walk(str(span["spanID"]), depth + 1)

    yield from walk(None, 0)


def _is_error(span: Mapping[str, Any]) -> bool:
    return any(t["key"] in ("error", "otel.status_code") and t["value"] in (True, "ERROR") for t in span["tags"])


def _label_position(left: float, width: float) -> str:
    """The duration label right of its bar, or left of it when the bar ends near the right edge."""
    if left + width > 85:
        return f"right:{100 - left:.3f}%"
    return f"left:{left + width:.3f}%"


def render(trace: Mapping[str, Any], *, title: str) -> str:
    """The HTML page of ``trace`` (Jaeger's JSON: ``traceID``, ``spans``, ``processes``)."""
    processes = trace["processes"]
    services = sorted({processes[s["processID"]]["serviceName"] for s in trace["spans"]})
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(services)}
    start = min(s["startTime"] for s in trace["spans"])
    end = max(s["startTime"] + s["duration"] for s in trace["spans"])
    total = max(end - start, 1)
    lines = []
    for depth, span in rows(trace):
        service = processes[span["processID"]]["serviceName"]
        left = 100 * (span["startTime"] - start) / total
        width = max(100 * span["duration"] / total, 0.25)
        kind = next((t["value"] for t in span["tags"] if t["key"] == "span.kind"), "")
        error = " error" if _is_error(span) else ""
        lines.append(
            f'<div class="row{error}"><div class="name" style="padding-left:{8 + depth * 14}px">'
            f'<span class="svc" style="background:{colour[service]}"></span>'
            f"<b>{html.escape(service)}</b> {html.escape(span['operationName'])}"
            f' <i>{html.escape(str(kind))}</i></div><div class="lane">'
            f'<div class="bar" style="left:{left:.3f}%;width:{width:.3f}%;background:{colour[service]}"></div>'
            f'<span class="ms" style="{_label_position(left, width)}">{span["duration"] / 1000:.2f} ms</span>'
            "</div></div>"
        )
    legend = "".join(
        f'<span class="key"><span class="svc" style="background:{colour[s]}"></span>{html.escape(s)}</span>'
        for s in services
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body {{ font: 13px/1.35 -apple-system, "DejaVu Sans", Arial, sans-serif; margin: 0; color: #222; background: #fff; }}
header {{ padding: 12px 16px; background: #f5f5f5; border-bottom: 1px solid #ddd; }}
header h1 {{ font-size: 17px; margin: 0 0 4px; }}
header .meta {{ color: #555; }}
.key {{ margin-right: 14px; }}
.svc {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }}
.row {{ display: flex; border-bottom: 1px solid #eee; height: 22px; align-items: center; }}
.row.error .name b {{ color: #c00; }}
.row.error .bar {{ outline: 2px solid #c00; }}
.name {{ box-sizing: border-box; flex: 0 0 500px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
.name i {{ color: #888; font-style: normal; font-size: 11px; }}
.lane {{ position: relative; flex: 1; height: 100%; border-left: 1px solid #ddd; margin-right: 16px; }}
.bar {{ position: absolute; top: 6px; height: 10px; border-radius: 2px; }}
.ms {{ position: absolute; top: 3px; padding: 0 6px; color: #666; font-size: 11px; white-space: nowrap; }}
</style></head><body>
<header><h1>{html.escape(title)}</h1>
<div class="meta">Trace {html.escape(str(trace["traceID"]))} &middot; {len(trace["spans"])} spans &middot;
{len(services)} services &middot; {total / 1000:.1f} ms &middot; {legend}</div></header>
{"".join(lines)}
</body></html>
"""
