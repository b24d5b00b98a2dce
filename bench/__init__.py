"""The benchmark suite: our server against python-socketio and a bare aiohttp broadcast server.

`python -m bench` runs it all (see BENCHMARKS.md); a benchmark, never a timed test.
"""
