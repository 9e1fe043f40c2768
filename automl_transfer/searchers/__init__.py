"""Searchers: random search and the RL controller, all behind one contract (`base.Searcher`)."""
