"""A small, dependency-free HTML report: headings, paragraphs, tables and PNG figures, written atomically."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ffidelity.utils import atomic

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { max-width: 520px; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; max-width: 520px; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
code, pre { background: #f6f8fa; padding: 2px 4px; border-radius: 3px; }
.small { font-size: .85em; color: #666; }
"""


class HtmlReport:
    """Collects report blocks and writes them as one HTML page with figures as PNG files beside it."""

    def __init__(self, title: str, out_dir: str | Path) -> None:
        self.title = title
        self.out_dir = Path(out_dir)
        self._blocks: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._blocks.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, raw: bool = False, cls: str | None = None) -> None:
        body = text if raw else html.escape(text)
        attr = f' class="{cls}"' if cls else ""
        self._blocks.append(f"<p{attr}>{body}</p>")

    def code(self, text: str) -> None:
        self._blocks.append(f"<pre>{html.escape(text)}</pre>")

    def bullets(self, items: list[str], raw: bool = False) -> None:
        lis = "".join(f"<li>{i if raw else html.escape(i)}</li>" for i in items)
        self._blocks.append(f"<ul>{lis}</ul>")

    def table(self, frame: pd.DataFrame, caption: str | None = None, float_format: str = "{:.3f}",
              index: bool = True) -> None:
        styled = frame.to_html(index=index, float_format=lambda v: float_format.format(v), na_rep="-",
                               border=0, escape=True)
        cap = f"<p class='small'>{html.escape(caption)}</p>" if caption else ""
        self._blocks.append(styled + cap)

    def figure(self, fig: Figure, name: str, caption: str = "", dpi: int = 110) -> Path:
        """Saves ``fig`` as ``name`` (a PNG beside the report) and embeds it."""
        import matplotlib.pyplot as plt

        path = self.out_dir / name
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        plt.close(fig)
        self.image(path, caption)
        return path

    def image(self, path: str | Path, caption: str = "") -> None:
        rel = os.path.relpath(Path(path), self.out_dir)
        self._blocks.append(
            f"<figure><a href='{html.escape(rel)}'><img src='{html.escape(rel)}' alt='{html.escape(caption)}'></a>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def link(self, href: str | Path, text: str) -> str:
        rel = os.path.relpath(Path(href), self.out_dir) if Path(href).is_absolute() else str(href)
        return f"<a href='{html.escape(rel)}'>{html.escape(text)}</a>"

    def raw(self, markup: str) -> None:
        self._blocks.append(markup)

    def render(self) -> str:
        body = "\n".join(self._blocks)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")

    def save(self, name: str = "report.html") -> Path:
        path = self.out_dir / name
        atomic.write_text(path, self.render())
        return path


def environment_info() -> dict[str, Any]:
    """Package versions and machine facts saved with every result."""
    import platform

    import numpy
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "torch": torch.__version__, "numpy": numpy.__version__,
                            "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    for mod in ("captum", "lightning", "transformers", "scipy", "sklearn"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            info[mod] = None
    from ffidelity._version import __version__

    info["ffidelity"] = __version__
    return info
