"""probeseg benchmarks (`python -m bench`, `python app.py bench`): retrain speed, dense masks, stroke-to-overlay
latency, feature throughput and memory, each against a baseline measured in the same run.

Timings live here and in bench/RESULTS.md, never in the test suite."""
