"""Frontiers: Pareto sets, Pass@U-k envelopes, hypervolume, statistics and selection."""
