"""Development scripts (the soak) and the process helpers that they, ``bench/`` and ``tests/`` share."""
