"""Small PNG charts, embedded in Markdown metadata as data URIs."""

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def bar_chart_markdown(values: dict[str, float], title: str, color: str = "#3b6ea8") -> str:
    """A small bar chart of ``values`` as a Markdown image (a few KB of PNG)."""
    figure, axis = plt.subplots(figsize=(4.2, 2.2), dpi=80)
    axis.bar(list(values), list(values.values()), color=color)
    axis.set_title(title, fontsize=9)
    axis.tick_params(labelsize=7)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{title}](data:image/png;base64,{encoded})"
