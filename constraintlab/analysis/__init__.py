"""Stage 3: the constraint matrix -> findings (spectrum, pairs, redundancy, contradictions,
zones). Numba kernels live in :mod:`constraintlab._kernels`, never here."""
