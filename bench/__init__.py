"""OrderFlow's benchmarks. Figures are reported as ratios to a baseline measured in the same run, because these
machines are shared and noisy; absolute numbers are printed for context only."""
