"""The simulated paper venue: a SQLite account trading a replayed price file."""
