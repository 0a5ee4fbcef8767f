"""Benchmark scripts: run each as `python benchmarks/NAME.py [--quick] [--json PATH]`."""
