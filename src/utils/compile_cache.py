"""MindSpore's graph compile cache, made safe: one folder per source tree and graph plan.

MindSpore (``MS_COMPILER_CACHE_ENABLE``) saves the graphs a process compiles as
``compile_cache_<n>.mindir`` where ``n`` counts the cached compilations of that process, and
on a later start loads graph ``n`` for the ``n``-th compilation, checking only the hash of the
entry script and of the modules it imports at top level. A different config, input shape or
order, or an edit to a module imported inside a function (as ``train.py`` does), silently
runs a stale graph (an x4 graph for an x2 net, a shape-3 result for a shape-4 input).

:func:`graph_cache` therefore caches only graphs whose sequence is fixed by a key the caller
gives (e.g. the training step, from the config), in the folder
``<root>/<checkout>/<source digest>/<key digest>``: ``source digest`` hashes every source file of
the repository (``*.py`` and ``src/**/*.cc``) and the MindSpore version, so a code change moves
to a new folder, and the folders of older sources of the same checkout are deleted then.
``root`` is ``$IRN_COMPILE_CACHE`` (default ``~/.cache/irn_mindspore/graphs``);
``IRN_COMPILE_CACHE=off`` switches the cache off. Graphs compiled outside the block (validation,
inference: their shapes depend on the data) are never cached.
"""
import contextlib
import hashlib
import json
import logging
import os
import shutil

import mindspore as ms

__all__ = ['source_digest', 'cache_folder', 'graph_cache']

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LOG = logging.getLogger('irn')
_state = {'folder': None}  # MindSpore fixes the cache path at the first cached compilation


def _source_files(root):
    files = [os.path.join(root, f) for f in os.listdir(root) if f.endswith('.py')]
    for folder, dirs, names in os.walk(os.path.join(root, 'src')):
        dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__')))
        files += [os.path.join(folder, n) for n in names if n.endswith(('.py', '.cc'))]
    return sorted(files)


def source_digest(root=ROOT):
    """Hash of every source file under ``root`` (names and contents) and the MindSpore version."""
    h = hashlib.sha256(ms.__version__.encode())
    for path in _source_files(root):
        h.update(os.path.relpath(path, root).encode() + b'\0')
        with open(path, 'rb') as f:
            h.update(f.read() + b'\0')
    return h.hexdigest()[:16]


def cache_folder(key, root=ROOT, cache_root=None):
    """The folder for graphs whose compile sequence ``key`` (JSON-serialisable) determines.

    Returns ``None`` when the cache is off (``IRN_COMPILE_CACHE=off``).
    """
    cache_root = cache_root or os.environ.get('IRN_COMPILE_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'irn_mindspore', 'graphs')
    if cache_root == 'off':
        return None
    checkout = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12]
    text = json.dumps(key, sort_keys=True, default=str)
    return os.path.join(cache_root, checkout, source_digest(root),
                        hashlib.sha256(text.encode()).hexdigest()[:16])


def _prune(folder):
    """Delete the folders of this checkout's older sources (not those of other checkouts)."""
    sources = os.path.dirname(os.path.dirname(folder))
    current = os.path.basename(os.path.dirname(folder))
    if os.path.isdir(sources):
        for name in os.listdir(sources):
            if name != current:
                shutil.rmtree(os.path.join(sources, name), ignore_errors=True)


@contextlib.contextmanager
def graph_cache(key, root=ROOT, cache_root=None):
    """Graphs first compiled inside this block are saved to / loaded from their keyed folder.

    ``key`` must determine the sequence of graphs compiled inside (config, shapes, order).
    One key per process: MindSpore keeps the first cache path it used; a second key compiles
    without the cache.
    """
    folder = cache_folder(key, root, cache_root)
    if folder is not None and _state['folder'] not in (None, folder):
        _LOG.warning('compile cache: a second graph plan in this process compiles uncached')
        folder = None
    if folder is not None:
        if _state['folder'] is None:
            _prune(folder)
            os.makedirs(folder, exist_ok=True)
            _state['folder'] = folder
        os.environ.update(MS_COMPILER_CACHE_ENABLE='1', MS_COMPILER_CACHE_PATH=folder)
    try:
        yield folder
    finally:  # graphs outside such blocks are never cached (their order is not keyed)
        os.environ['MS_COMPILER_CACHE_ENABLE'] = '0'
