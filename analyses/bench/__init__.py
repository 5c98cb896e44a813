"""Benchmarks behind `mdm-lens bench`: sampler speed, attention paths, cached samplers and steering overhead.
They live above `interventions` because several time steering plans; each returns JSON-ready dicts of ratios
measured in one run."""
