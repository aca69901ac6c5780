"""The status page: server-side HTML with inline SVG charts (no script, no CDN, works
offline). Read-only: it has no control of any kind."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from bot.monitoring.sender import AlertRecord
from bot.monitoring.status_report import StatusReport

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


def _banner(report: StatusReport) -> str:
    if report.halted_reason:
        return (f'<div class="banner halted" id="halt">HALTED: {escape(report.halted_reason)}. '
                f"Nothing trades until an operator runs <code>{escape(report.rearm_command)}"
                "</code>.</div>")
    if report.last_cycle is None:
        return '<div class="banner halted" id="halt">No cycle has run yet.</div>'
    return '<div class="banner ok" id="halt">Trading armed (no halt).</div>'


def _max_drift(report: StatusReport) -> float | None:
    return max((abs(h.drift) for h in report.holdings if h.drift is not None), default=None)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+,.2f}"


def _figures(report: StatusReport) -> str:
    acct = report.account
    drawdown = acct.drawdown if acct is not None else None
    var_breach = report.var is not None and report.max_var is not None and report.var > report.max_var
    dd_breach = (drawdown is not None and report.max_drawdown is not None
                 and drawdown >= report.max_drawdown)
    last = report.last_cycle
    return '<div class="figs">' + "".join([
        _fig("Equity", _money(acct.equity if acct else None), fig_id="equity"),
        _fig("Cash", _money(acct.cash if acct else None), fig_id="cash"),
        _fig("P&L since inception", _signed(acct.pnl_since_inception if acct else None),
             fig_id="pnl"),
        _fig("P&L month / year to date", f"{_signed(acct.pnl_mtd if acct else None)} / "
             f"{_signed(acct.pnl_ytd if acct else None)}", fig_id="pnl-mtd-ytd"),
        _fig(_limited("Drawdown", "max", report.max_drawdown), _pct(drawdown),
             "breach" if dd_breach else "", "drawdown"),
        _fig(_limited("VaR", "limit", report.max_var), _pct(report.var),
             "breach" if var_breach else "", "var"),
        _fig("Max drift now", _pct(_max_drift(report)), fig_id="max-drift"),
        _fig("Last cycle", last.status if last else "—", fig_id="last-status"),
        _fig("Last success (UTC)", _when(report.last_success_at), fig_id="last-success"),
    ]) + "</div>"


def _when(iso: str | None) -> str:
    return "—" if not iso else iso[:19].replace("T", " ")


def _limited(label: str, word: str, limit: float | None) -> str:
    return f"{label} (no limit)" if limit is None else f"{label} ({word} {_pct(limit)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str,
           err_col: int | None = None) -> str:
    if not rows:
        return f'<p class="sub" id="{table_id}">None.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="err">{escape(c)}</td>' if i == err_col
                         else f"<td>{escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _subtitle(report: StatusReport) -> str:
    d = report.daemon
    daemon = (f"daemon pid {d.pid} since {_when(d.started_at)} UTC" if d.alive
              else "no daemon holds the state lock")
    if d.config_note:
        daemon += f" ({d.config_note})"
    wake = f" · next wake {_when(report.next_wake)} UTC" if report.next_wake else ""
    return (f'<p class="sub">mode <b>{escape(report.mode)}</b> · strategy '
            f'<b>{escape(report.strategy)}</b> · broker <b>{escape(report.broker)}</b> · '
            f"{escape(daemon)}{escape(wake)}<br>read-only page generated "
            f"{escape(_when(report.generated_at))} UTC, refreshes every {REFRESH_SECS} s</p>")


def _sections(report: StatusReport, alerts: Sequence[AlertRecord]) -> list[str]:
    labels = [p.asof for p in report.equity_curve]
    equity = [p.equity for p in report.equity_curve]
    holdings = [[h.symbol, "—" if h.qty is None else f"{h.qty:,.4f}", _money(h.value),
                 _pct(h.weight), _pct(h.target), "—" if h.drift is None else f"{h.drift:+.2%}",
                 "—" if h.drifted is None else "yes" if h.drifted else ""] for h in report.holdings]
    outside = [[o.symbol, f"{o.qty:,.4f}", _money(o.value), _pct(o.weight), o.note]
               for o in report.outside_universe]
    orders = [[o.client_order_id, o.symbol, o.side, f"{o.qty:,.4f}", f"{o.filled_qty:,.4f}",
               o.status, o.reason or ""] for o in report.open_orders]
    cycles = [[c.cycle_id, c.asof or "", c.status, _when(c.finished_at),
               "" if c.orders_filled is None else str(c.orders_filled),
               _money(c.equity) if c.equity is not None else "", c.error or c.shown_note]
              for c in report.cycles]
    recent = [[_when(a.at.isoformat()), a.kind, a.title,
               a.outcome if a.count == 1 else f"{a.outcome} ×{a.count}"]
              for a in reversed(alerts)]
    notes = "".join(f'<p class="sub">{escape(n)}</p>' for n in report.notes)
    return [
        "<h2>Equity and drawdown</h2>",
        svg_chart(labels, equity, "Equity after each cycle", "#2563eb", ",.0f"),
        svg_chart(labels, drawdown_series(equity), "Drawdown from peak", "#c2410c", ".1%",
                  invert=True),
        "<h2>Holdings vs targets</h2>",
        f'<p class="sub">{escape(report.holdings_caption())}</p>',
        _table(["symbol", "qty", "value", "weight", "target", "drift", "drifted"], holdings,
               "holdings"),
        *(["<h2>Outside the universe</h2>",
           _table(["symbol", "qty", "value", "weight of equity", "status"], outside,
                  "outside-universe")] if outside else []),
        "<h2>Open and unsent orders</h2>",
        _table(["client order id", "symbol", "side", "qty", "filled", "status", "reason"],
               orders, "orders"),
        "<h2>Last cycles</h2>",
        _table(["cycle", "as of", "status", "finished (UTC)", "fills", "equity",
                "error / reason"], cycles, "cycles", err_col=6),
        "<h2>Last alerts</h2>",
        _table(["at (UTC)", "kind", "title", "outcome"], recent, "alerts"),
        notes,
    ]


def render_page(report: StatusReport, alerts: Sequence[AlertRecord] = ()) -> str:
    """The whole HTML document for ``report`` (from ``build_status_report``) and the alert
    sender's recent list (oldest first)."""
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECS}">',
        '<link rel="icon" href="data:,">', "<title>allocbot status</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>allocbot</h1>", _subtitle(report), _banner(report), _figures(report),
        *_sections(report, alerts),
        "</body></html>",
    ])
