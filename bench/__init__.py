"""Benchmarks of the fitting service. ``python -m bench`` (or ``make bench``) runs them all.

Each benchmark is a module with ``run() -> list[Row]``, run in a subprocess of its own by
``bench.__main__`` so that settings (database, engine, broker) never leak between them.
See bench/README.md for what each one measures and the recorded results.
"""
