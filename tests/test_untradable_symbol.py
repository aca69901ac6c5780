"""A universe symbol Alpaca marks untradable (a halt, a delisting): the cycle fails with a
message that says what happens to the rest of the universe and to the shares held, and
sends no order (real ``allocbot once`` against FakeAlpaca)."""

from __future__ import annotations

from typing import Any

from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, alpaca_config, fake  # noqa: F401 - the fixture


def test_an_untradable_symbol_fails_the_cycle_saying_what_the_way_out_leaves(
        fake: FakeAlpaca, write_config: Any) -> None:  # noqa: F811
    fake.assets["DBC"] = (False, False)
    proc = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                              env=KEYS_ENV)
    [failed] = [e for e in json_lines(proc.stdout) if e["event"] == "cycle_failed"]
    assert "symbol DBC is not tradable on Alpaca" in failed["error"]
    assert "no other symbol is traded either" in failed["error"]
    assert "left untouched outside the universe" in failed["error"]
    assert fake.order_posts() == []
