"""OMDP engine: model analysis, cuts, segments, profiling, partitions. Never imports textual."""

__version__ = "0.1.0"
