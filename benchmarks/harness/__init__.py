"""The benchmark harness behind ``python benchmarks/run.py``: machine facts, peer virtual
environments, subprocess runs with peak RSS, nginx, the image pool, and the report."""
