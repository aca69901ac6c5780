"""The Alpaca adapter over alpaca-py (imported only by code that selects Alpaca)."""
