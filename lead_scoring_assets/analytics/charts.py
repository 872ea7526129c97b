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
    return _markdown_image(figure, axis, title)


def interval_chart_markdown(
    values: dict[str, tuple[float, float, float]], title: str, color: str = "#3b6ea8"
) -> str:
    """Bars of each label's ``(value, low, high)``: the value, its interval as an error bar."""
    middle = [v[0] for v in values.values()]
    errors = [[v[0] - v[1] for v in values.values()], [v[2] - v[0] for v in values.values()]]
    figure, axis = plt.subplots(figsize=(4.2, 2.2), dpi=80)
    axis.bar(list(values), middle, color=color, yerr=errors, capsize=3, ecolor="#444444")
    axis.axhline(0, color="#888888", linewidth=0.6)
    return _markdown_image(figure, axis, title)


def _markdown_image(figure, axis, title: str) -> str:
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
