"""Static-shape graphs for inference: one compiled graph per distinct input shape.

A Cell called in graph mode with tensors of a new shape is compiled for that shape on first use,
and MindSpore keeps the graph for the life of the process (or loads it from the compile cache,
see :mod:`src.utils.compile_cache`). Static shapes let the fast CPU convolution
(:mod:`src.network.fast_conv`) run; dynamic-shape graphs would need MindSpore's Conv2D, which
re-creates its oneDNN kernel at every call and made ``val.py`` / ``infer.py`` about 100x slower.

:class:`ShapeGraphs` wraps a Cell and counts the shapes it has seen, so callers can say how many
graph compilations a run cost (:func:`compilations`).
"""
__all__ = ['ShapeGraphs', 'compilations']

_COUNT = {'graphs': 0}


class ShapeGraphs:
    """Calls ``cell`` with tensors of static shapes; counts the distinct input shapes.

    Args:
        cell (nn.Cell): the graph to run (compiled once per input shape by MindSpore).
    """

    def __init__(self, cell):
        self.cell = cell
        self.shapes = set()

    def __call__(self, *tensors):
        key = tuple(tuple(t.shape) for t in tensors)
        if key not in self.shapes:
            self.shapes.add(key)
            _COUNT['graphs'] += 1
        return self.cell(*tensors)


def compilations():
    """Number of inference graphs built in this process so far (one per cell and input shape)."""
    return _COUNT['graphs']
