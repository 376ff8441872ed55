"""Search drivers: one objective (``search.evaluate.Scorer``), several backends."""
