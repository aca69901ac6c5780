"""The bundled synthetic sample market: its generator and the CSV it writes
(``python -m bot.sample_market`` regenerates ``sample_prices.csv`` bit for bit)."""

from pathlib import Path

SAMPLE_PRICES_PATH = Path(__file__).parent / "sample_prices.csv"
