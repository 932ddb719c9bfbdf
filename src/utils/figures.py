"""Figures drawn with matplotlib (Agg backend, no display) and written as PNG atomically."""
import io

import matplotlib

matplotlib.use('Agg')

from matplotlib.figure import Figure  # noqa: E402

from src.utils.atomic import write_bytes  # noqa: E402

__all__ = ['new_figure', 'save_png']

DPI = 100


def new_figure(width_px, height_px):
    """A matplotlib ``Figure`` of about ``width_px`` x ``height_px`` pixels (constrained layout).

    It is not registered with pyplot, so nothing global is kept and no display is needed.
    """
    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout='constrained')


def save_png(fig, path):
    """Render ``fig`` to PNG bytes and write them to ``path`` atomically (folder created).

    Raises:
        WriteError (an IRNError): the file cannot be written (e.g. the disk is full); nothing
        new is left under ``path``.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=DPI, facecolor='white')
    write_bytes(path, buf.getvalue(), 'figure')
