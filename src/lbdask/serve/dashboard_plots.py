"""The Bokeh document of the `/lbdask/serving` page: latency percentiles and tier fractions over
time, alpha and queue depth per worker, a per-worker table.

A standalone document whose sources poll the page's JSON routes (AjaxDataSource), so it needs
no Bokeh server session: Dask's dashboard serves BokehJS (`/static/`) and the scheduler plugin
(serve.dashboard) the data. The figures follow Dask's own pages: datetime x axes, toolbars off.
"""
from __future__ import annotations

from typing import Any

from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import AjaxDataSource, CustomJS, DataTable, Div, FactorRange, TableColumn
from bokeh.plotting import figure
from bokeh.resources import Resources

from lbdask.serve.history import PERCENTILES
from lbdask.serve.latency import TIERS

COLORS = {"image": "#2ca02c", "latent": "#1f77b4", "miss": "#ff7f0e", "error": "#d62728"}
DASHES = dict(zip(PERCENTILES, ("solid", "dashed", "dotted")))
TABLE = (("worker", "worker"), ("requests", "requests"), ("image_hits", "image hits"), ("latent_hits", "latent hits"),
         ("misses", "misses"), ("errors", "errors"), ("alpha", "alpha"), ("queue_depth", "queue"),
         ("t_decode", "T_decode ms"), ("t_fetch", "T_fetch ms"), ("spillovers", "spillovers"),
         ("coalesced", "coalesced"))
#: keeps the summary line and the per-worker axes in step with the polled worker rows
ON_WORKERS = """
const d = source.data, n = d.worker.length;
const requests = d.requests.reduce((a, b) => a + b, 0);
summary.text = `<b>${n} serving worker(s)</b>, ${requests} requests`;
for (const r of ranges) r.factors = d.worker.slice();
"""


def _timeline(title: str, **kw: Any) -> Any:
    fig = figure(title=title, x_axis_type="datetime", height=280, width=620, toolbar_location=None, **kw)
    fig.xaxis.axis_label = "time (UTC)"
    return fig


def _bars(title: str, field: str, source: AjaxDataSource, workers: list[str], **kw: Any) -> Any:
    fig = figure(title=title, x_range=FactorRange(factors=workers), height=280, width=620, toolbar_location=None,
                 **kw)
    fig.vbar(x="worker", top=field, width=0.7, source=source, color="#1f77b4")
    fig.y_range.start = 0
    fig.xaxis.major_label_orientation = 0.3
    return fig


def page(history: dict[str, list], workers: dict[str, list], routes: tuple[str, str], every_ms: int = 2000) -> str:
    """The page's HTML: `history` and `workers` as the first data, then polled from `routes`
    (history URL, workers URL) every `every_ms`; BokehJS from the dashboard's own `/static/`."""
    hist = AjaxDataSource(data_url=routes[0], polling_interval=every_ms, mode="replace", method="GET", data=history)
    per_worker = AjaxDataSource(data_url=routes[1], polling_interval=every_ms, mode="replace", method="GET",
                                data=workers)
    latency = _timeline("Read latency, last 10 s (ms): P50 solid, P95 dashed, P99 dotted", y_axis_type="log")
    for tier in ("image", "latent", "miss"):
        for p in PERCENTILES:
            latency.line("time", f"{tier}_p{p}", source=hist, color=COLORS[tier], line_dash=DASHES[p], line_width=2,
                         **({"legend_label": tier} if p == 50 else {}))
    latency.legend.location = "top_left"
    fractions = _timeline("Reads by tier, last 10 s (fraction)", y_range=(0, 1))
    fractions.varea_stack([f"{t}_frac" for t in TIERS], x="time", source=hist, color=[COLORS[t] for t in TIERS],
                          legend_label=list(TIERS), alpha=0.8)
    fractions.legend.location = "bottom_left"
    rate = _timeline("Reads per second (cluster)")
    rate.line("time", "rate", source=hist, line_width=2, color="#333333")
    alpha = _bars("alpha (image-tier share of the cache) per worker", "alpha", per_worker, workers["worker"],
                  y_range=(0, 1))
    depth = _bars("Decode queue depth per worker", "queue_depth", per_worker, workers["worker"])
    table = DataTable(source=per_worker, columns=[TableColumn(field=f, title=t, width=220 if f == "worker" else 90) for f, t in TABLE], width=1240,
                      height=30 + 28 * max(3, len(workers["worker"])), index_position=None)
    summary = Div(text="")
    per_worker.js_on_change("data", CustomJS(args={"source": per_worker, "summary": summary,
                                                   "ranges": [alpha.x_range, depth.x_range]}, code=ON_WORKERS))
    n = len(workers["worker"])
    summary.text = f"<b>{n} serving worker(s)</b>, {sum(workers['requests'])} requests"
    layout = column(Div(text="<h2>lbdask serving</h2>"), summary, row(latency, fractions), row(rate, alpha),
                    row(depth), table)
    return file_html(layout, Resources(mode="server", root_url="/"), title="lbdask serving")
