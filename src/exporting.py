"""Writing inference graphs (MINDIR / ONNX / AIR) for export.py: the part every model shares.

AIR is deprecated by MindSpore 2.10 (export.py warns; ``export.AIR_NOTE``); it stays best-effort.

A model lists its graphs as ``(suffix, cell, inputs, input_names)``; inputs are placeholders
with ``None`` height / width (dynamic MINDIR) or zero tensors of a fixed size (ONNX, AIR).
Graphs always use MindSpore's own Conv2D, so they stay portable.
"""
import os

import mindspore as ms
import mindspore.onnx  # noqa: F401  (ms.onnx.export)

from src.network.fast_conv import mindspore_conv
from src.utils.errors import IRNError, describe_error

__all__ = ['EXTENSIONS', 'graph_input', 'write_graphs']

EXTENSIONS = {'MINDIR': '.mindir', 'ONNX': '.onnx', 'AIR': '.air'}


def graph_input(channels, height=None, width=None, *trailing):
    """A (1, C, H, W, *trailing) float32 graph input: dynamic H, W when ``height`` is None."""
    if height is None:
        return ms.Tensor(shape=[1, channels, None, None, *trailing], dtype=ms.float32)
    return ms.numpy.zeros((1, channels, height, width, *trailing), ms.float32)


def write_graphs(graphs, file_name, file_format='MINDIR'):
    """Export each ``(suffix, cell, inputs, names)`` to ``<file_name><suffix>.<ext>``.

    Returns the paths written. A failure is an IRNError naming the graph and MindSpore's reason.
    """
    os.makedirs(os.path.dirname(os.path.abspath(file_name)), exist_ok=True)
    paths = []
    for suffix, cell, inputs, names in graphs:
        target = file_name + suffix
        path = target + EXTENSIONS[file_format]
        if os.path.exists(path):
            os.remove(path)  # MindSpore writes read-only files; never report a stale one
        cell.set_train(False)
        try:
            with mindspore_conv():  # portable graphs: no custom CPU kernels inside
                if file_format == 'ONNX':  # static shapes only; named inputs
                    ms.onnx.export(cell, *inputs, file_name=target, input_names=names)
                else:
                    ms.export(cell, *inputs, file_name=target, file_format=file_format)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise IRNError(f'{target}: {file_format} export failed: {describe_error(exc)}') from None
        if not os.path.isfile(path):
            raise IRNError(f'{path}: MindSpore reported success but wrote no file')
        os.chmod(path, 0o644)
        paths.append(path)
    return paths
