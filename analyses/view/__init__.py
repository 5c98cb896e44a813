"""The trace viewer: one self-contained HTML page per set of generations (token x step grid, per-position
predictions at every step, logit lens, attention, steered vs unsteered with damage, optional features).

    from analyses.view import render
    view = render(model, ["Write a haiku"], plan=plan)     # shows inline in Jupyter
    view.save("trace.html")
"""

from .extract import FeatureSpec, Trace, trace_generation
from .render import View, render

__all__ = ["FeatureSpec", "Trace", "View", "render", "trace_generation"]
