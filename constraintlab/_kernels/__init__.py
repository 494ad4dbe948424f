"""Numba kernels of the analysis stage. Each kernel takes raw arrays and has a NumPy twin
(same module, ``*_numpy``) that the tests use as its oracle. Shared helpers: ``heap`` (the
fixed-size top-m heaps of every neighbour kernel), ``_threads`` (thread counts for small
calls)."""
