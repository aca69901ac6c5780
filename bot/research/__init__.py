"""Research at scale: parameter sweeps, strategy comparison, overfitting statistics.

Optuna and Dask are imported only inside the code paths that need them (the ``research``
extra), so ``allocbot --help`` and the daemon never load them.
"""
