"""matplotlib with the file-only Agg backend (no display on our machines or in CI)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401
