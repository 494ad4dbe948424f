"""Numba kernels of the analysis stage. Each kernel takes raw arrays and has a NumPy twin
(same module, ``*_numpy``) that the tests use as its oracle."""
