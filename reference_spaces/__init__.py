"""Reference search spaces (imported as ``flatarch.reference_spaces``).

* :mod:`flatarch.reference_spaces.nb201` -- NAS-Bench-201 (6 edges, 5 ops, benchmark lookup).
* :mod:`flatarch.reference_spaces.darts` -- the DARTS space (14 edges, 8 ops, normal/reduce cells).
"""
