"""``python -m bot.sample_market [--out DIR]``: write the sample prices and macro CSVs from
their seeds (default: over the bundled files, which they reproduce bit for bit)."""

from pathlib import Path

import click

from bot.sample_market import SAMPLE_PRICES_PATH
from bot.sample_market.generator import write_sample_prices
from bot.sample_market.macro import SAMPLE_MACRO_PATH, write_sample_macro


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Directory to write sample_prices.csv and sample_macro.csv "
                                 "to (default: the bundled files, rewritten in place).")
def main(out_dir: Path | None) -> None:
    """Write the synthetic sample market (prices and macro series) from its seeds."""
    write_sample_prices(SAMPLE_PRICES_PATH if out_dir is None else out_dir / SAMPLE_PRICES_PATH.name)
    write_sample_macro(SAMPLE_MACRO_PATH if out_dir is None else out_dir / SAMPLE_MACRO_PATH.name)


if __name__ == "__main__":
    main()
