"""``python -m bot`` is the same as the ``allocbot`` command."""

from bot.cli import main

main()
