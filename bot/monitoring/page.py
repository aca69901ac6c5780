"""The status page: server-side HTML with inline SVG charts (no script, no CDN, works
offline). Read-only: it has no control of any kind."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from bot.monitoring.page_data import PageData

CHART_W, CHART_H, PAD = 720, 180, 36
REFRESH_SECS = 30
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:60rem;color:#1d2430;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
.sub{color:#5a6473;margin:0 0 1rem}
.banner{padding:.8rem 1rem;border-radius:6px;margin:1rem 0;font-weight:600}
.halted{background:#fde2e1;color:#8a1c16;border:1px solid #f3b0ab}
.ok{background:#e3f5e8;color:#1d5e31;border:1px solid #b3dfc0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.6rem}
.fig{border:1px solid #dde2ea;border-radius:6px;padding:.5rem .7rem}
.fig b{display:block;font-size:1.15rem} .fig span{color:#5a6473;font-size:.8rem}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{text-align:right;padding:.25rem .5rem;border-bottom:1px solid #e6e9ef}
th:first-child,td:first-child{text-align:left} td.err{color:#8a1c16;text-align:left}
.breach{color:#8a1c16;font-weight:600} svg{background:#fafbfc;border:1px solid #e6e9ef}
"""


def _money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def _fig(label: str, value: str, css: str = "", fig_id: str = "") -> str:
    ident = f' id="{fig_id}"' if fig_id else ""
    return (f'<div class="fig"><span>{escape(label)}</span>'
            f'<b class="{css}"{ident}>{escape(value)}</b></div>')


def drawdown_series(equity: Sequence[float]) -> list[float]:
    """Fraction below the running peak at each point (0 at a new high)."""
    peak, out = 0.0, []
    for value in equity:
        peak = max(peak, value)
        out.append(1 - value / peak if peak > 0 else 0.0)
    return out


def svg_chart(labels: Sequence[str], values: Sequence[float], title: str, color: str,
              fmt: str, invert: bool = False) -> str:
    """A line chart as inline SVG; ``invert`` draws values downward from 0 (drawdown)."""
    if len(values) < 2:
        return f'<p class="sub">{escape(title)}: not enough cycles yet.</p>'
    lo, hi = (0.0, max(values) or 1.0) if invert else (min(values), max(values))
    span = (hi - lo) or abs(hi) or 1.0
    inner_w, inner_h = CHART_W - 2 * PAD, CHART_H - 2 * PAD
    xs = [PAD + inner_w * i / (len(values) - 1) for i in range(len(values))]
    ys = [PAD + inner_h * ((v - lo) / span if invert else (hi - v) / span) for v in values]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    top, bottom = (lo, hi) if invert else (hi, lo)
    top_label, bottom_label = (format(-v if invert and v else v, fmt) for v in (top, bottom))
    return (
        f'<svg role="img" aria-label="{escape(title)}" width="100%" viewBox="0 0 {CHART_W} '
        f'{CHART_H}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{PAD}" y="16" font-size="12" fill="#1d2430">{escape(title)}</text>'
        f'<text x="{CHART_W - PAD}" y="{PAD - 4}" font-size="10" text-anchor="end" '
        f'fill="#5a6473">{escape(top_label)}</text>'
        f'<text x="{CHART_W - PAD}" y="{CHART_H - PAD + 12}" font-size="10" text-anchor="end" '
        f'fill="#5a6473">{escape(bottom_label)}</text>'
        f'<text x="{PAD}" y="{CHART_H - 8}" font-size="10" fill="#5a6473">{escape(labels[0])}</text>'
        f'<text x="{CHART_W - PAD}" y="{CHART_H - 8}" font-size="10" text-anchor="end" '
        f'fill="#5a6473">{escape(labels[-1])}</text>'
        f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{points}"/></svg>')


def _banner(data: PageData) -> str:
    if data.halt_reason:
        return (f'<div class="banner halted" id="halt">HALTED: {escape(data.halt_reason)}. '
                "Nothing trades until an operator runs <code>allocbot rearm</code>.</div>")
    if not data.journal_found:
        return '<div class="banner halted" id="halt">No journal yet: no cycle has run.</div>'
    return '<div class="banner ok" id="halt">Trading armed (no halt).</div>'


def _figures(data: PageData) -> str:
    var_breach = (data.var is not None and data.var_limit is not None
                  and data.var > data.var_limit)
    dd_breach = (data.drawdown is not None and data.max_drawdown is not None
                 and data.drawdown >= data.max_drawdown)
    last = data.cycles[0] if data.cycles else None
    return '<div class="figs">' + "".join([
        _fig("Equity", _money(data.equity), fig_id="equity"),
        _fig("Cash", _money(data.cash), fig_id="cash"),
        _fig(_limited("Drawdown", "max", data.max_drawdown), _pct(data.drawdown),
             "breach" if dd_breach else "", "drawdown"),
        _fig(_limited("VaR", "limit", data.var_limit), _pct(data.var),
             "breach" if var_breach else "", "var"),
        _fig("Max drift", _pct(data.max_drift), fig_id="max-drift"),
        _fig("Last cycle", last.status if last else "—", fig_id="last-status"),
        _fig("Last success (UTC)", (data.last_success_at or "—")[:19].replace("T", " "),
             fig_id="last-success"),
    ]) + "</div>"


def _limited(label: str, word: str, limit: float | None) -> str:
    return f"{label} (no limit)" if limit is None else f"{label} ({word} {_pct(limit)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str,
           err_col: int | None = None) -> str:
    if not rows:
        return f'<p class="sub" id="{table_id}">None yet.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="err">{escape(c)}</td>' if i == err_col
                         else f"<td>{escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cycle_rows(data: PageData) -> list[list[str]]:
    rows = []
    for c in data.cycles:
        s = c.summary
        equity = s.get("equity_after", s.get("equity"))
        rows.append([c.cycle_id, c.asof or "", c.status, (c.finished_at or "")[:19].replace("T", " "),
                     str(s.get("orders_filled", "")),
                     _money(equity) if isinstance(equity, int | float) else "",
                     str(s.get("error") or s.get("reason") or "")])
    return rows


def render_page(data: PageData) -> str:
    """The whole HTML document."""
    labels = [label for label, _ in data.curve]
    equity = [value for _, value in data.curve]
    holdings = [[h.symbol, _pct(h.weight), _pct(h.target), f"{h.drift:+.2%}"]
                for h in data.holdings]
    alerts = [[a.at.isoformat(timespec="seconds").replace("T", " ")[:19], a.kind, a.title,
               a.outcome] for a in data.alerts]
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECS}">',
        '<link rel="icon" href="data:,">', "<title>allocbot status</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>allocbot</h1>",
        f'<p class="sub">mode <b>{escape(data.mode)}</b> · strategy <b>{escape(data.strategy)}'
        f'</b> · broker <b>{escape(data.broker)}</b> · read-only page, generated '
        f'{data.generated_at.isoformat(timespec="seconds")} (refreshes every {REFRESH_SECS} s)</p>',
        _banner(data), _figures(data),
        "<h2>Equity and drawdown</h2>",
        svg_chart(labels, equity, "Equity after each cycle", "#2563eb", ",.0f"),
        svg_chart(labels, drawdown_series(equity), "Drawdown from peak", "#c2410c", ".1%",
                  invert=True),
        "<h2>Holdings vs targets</h2>",
        '<p class="sub">Weights as the last cycle saw them, before its orders.</p>',
        _table(["symbol", "weight", "target", "drift"], holdings, "holdings"),
        "<h2>Last cycles</h2>",
        _table(["cycle", "as of", "status", "finished (UTC)", "fills", "equity", "error / reason"],
               _cycle_rows(data), "cycles", err_col=6),
        "<h2>Last alerts</h2>",
        _table(["at (UTC)", "kind", "title", "outcome"], alerts, "alerts"),
        "</body></html>",
    ])
