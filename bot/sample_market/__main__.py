"""``python -m bot.sample_market``: rewrite the sample prices and macro CSVs from their seeds."""

from bot.sample_market import generator, macro

generator.main()
macro.main()
