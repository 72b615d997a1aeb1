"""Loss-landscape probes around trained weights: directions, curves, surfaces, summaries and plots."""
