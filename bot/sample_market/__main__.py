"""``python -m bot.sample_market``: rewrite the sample CSV from its seed."""

from bot.sample_market.generator import main

main()
