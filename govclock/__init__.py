"""The command line and the benchmarks: the entry points a person runs."""
