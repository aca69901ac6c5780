"""The status page in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium without Selenium Manager): it loads, shows what the journal holds, and the
browser console has no SEVERE message."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli_in_process
from tests.monitoring_support import read_events_until, start_daemon, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT_ENV = "ALLOCBOT_SCREENSHOT"  # set to a path to keep a screenshot of the page

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def _chromium():
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium reach out or send stats
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1100,1500"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def _journal_figures(db: Path) -> tuple[dict, str]:
    with sqlite3.connect(db) as con:
        (summary,) = con.execute(
            "SELECT summary FROM cycles WHERE summary LIKE '%equity_after%' "
            "ORDER BY seq DESC LIMIT 1").fetchone()
        last_status = con.execute("SELECT status FROM cycles ORDER BY seq DESC LIMIT 1").fetchone()
    return json.loads(summary), last_status[0]


def test_status_page_in_chromium_shows_journal_figures_without_console_errors(
        tmp_path, write_config):
    history = write_config({"schedule": {"interval_secs": 0.01}})  # 25 cycles, short waits
    assert run_cli_in_process("run", "--config", str(history), "--max-cycles", "25").returncode == 0
    summary, last_status = _journal_figures(tmp_path / "state" / "allocbot.sqlite")
    page = write_config({"schedule": {"interval_secs": 3600, "run_at_start": False},
                         "monitoring": {"http_port": 0}}, name="page.toml")
    proc = start_daemon(page)
    driver = None
    try:
        events = read_events_until(proc, "daemon_started")
        port = next(e for e in events if e["event"] == "monitoring_started")["http_port"]
        driver = _chromium()
        driver.get(f"http://127.0.0.1:{port}/")
        from selenium.webdriver.common.by import By

        text = {i: driver.find_element(By.ID, i).text
                for i in ("equity", "cash", "last-status", "halt", "holdings", "cycles")}
        title = driver.title
        charts = len(driver.find_elements(By.CSS_SELECTOR, "svg polyline"))
        console = driver.get_log("browser")
        if os.environ.get(SCREENSHOT_ENV):
            driver.save_screenshot(os.environ[SCREENSHOT_ENV])
    finally:
        if driver is not None:
            driver.quit()
        stop(proc)
    assert title == "allocbot status"
    assert text["equity"] == f"{summary['equity_after']:,.2f}"
    assert text["cash"] == f"{summary['cash_after']:,.2f}"
    assert text["last-status"] == last_status
    assert "Trading armed" in text["halt"]
    symbol, target = next(iter(summary["targets"].items()))
    assert f"{symbol} " in text["holdings"] and f"{target:.2%}" in text["holdings"]
    assert text["cycles"].count("finished") >= 10  # the last cycles, each with its status
    assert charts == 2  # equity and drawdown curves, drawn server-side
    assert [m for m in console if m["level"] == "SEVERE"] == []
