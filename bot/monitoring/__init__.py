"""Watching the bot: health, status report, metrics, alerts and the status page.

May import bot.engine, bot.core and bot.config; bot.cli imports it; bot.engine never does.
"""
