"""Fast CPU kernels: oneDNN direct convolutions for the dense sub-networks, and the coupling's
scale in double precision, as MindSpore Custom ops.

MindSpore's CPU Conv2D hands oneDNN plain NCHW tensors, for which oneDNN picks an im2col GEMM
(and a large workspace per conv). ``dnnl_conv.cc`` calls the same oneDNN library (MindSpore's
own ``libdnnl.so.3``) with blocked layouts, which selects its direct JIT kernels: about twice as
fast (``python scripts/benchmark.py ops``). It is compiled with g++ on first use against the
oneDNN headers of the ``onednn-devel-cpu-gomp`` package and cached. Only 3x3, stride 1, padding 1, float32, CPU.

The backend is chosen by :func:`select` (called by ``src.utils.device.select_conv``) from the
environment variable ``IRN_CONV`` = ``auto`` (default: oneDNN on CPU if it builds, else
MindSpore's conv), ``dnnl`` (oneDNN or a one-line error) or ``mindspore``.

:func:`exp_scale` is the coupling's ``exp(clamp * (2 * sigmoid(h) - 1))``. MindSpore's float32
CPU ``exp`` / ``sigmoid`` are 30-60x less precise than a correctly rounded float32 result (max
relative error 5.3e-6 / 3.5e-6 against 6e-8), which every coupling block carries into the
next. On CPU in float32 it is evaluated in double and rounded once: by the library's op when it
is loaded, else through float64 casts. Elsewhere (GPU, Ascend, float16) MindSpore's kernels run.
"""
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile

import mindspore as ms
from mindspore import ops

from src.utils.errors import IRNError

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dnnl_conv.cc')
_LOG = logging.getLogger('irn')
# ops: the Custom ops (see _make_ops) while the fast path is on; precise: CPU float32 exp_scale
_state = {'ops': None, 'precise': False}


def _headers():
    """The oneDNN include dir (onednn-devel-cpu-gomp installs it under the environment prefix)."""
    for root in (os.environ.get('IRN_DNNL_INCLUDE'), os.path.join(sys.prefix, 'include')):
        if root and os.path.isfile(os.path.join(root, 'oneapi', 'dnnl', 'dnnl.hpp')):
            return root
    raise IRNError('oneDNN headers not found under %s/include (pip install onednn-devel-cpu-gomp, '
                   'or set IRN_DNNL_INCLUDE)' % sys.prefix)


def _mindspore_lib():
    lib = os.path.join(os.path.dirname(ms.__file__), 'lib')
    if not os.path.isfile(os.path.join(lib, 'libdnnl.so.3')):
        raise IRNError('%s/libdnnl.so.3 not found: this MindSpore build has no oneDNN' % lib)
    return lib


def build():
    """Compile ``dnnl_conv.cc`` once per source/MindSpore version; return the .so path."""
    include, lib = _headers(), _mindspore_lib()
    with open(_SOURCE, 'rb') as f:
        digest = hashlib.sha256(f.read() + ms.__version__.encode() + include.encode()).hexdigest()[:16]
    cache = os.environ.get('IRN_KERNEL_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'irn_mindspore')
    target = os.path.join(cache, 'dnnl_conv-%s.so' % digest)
    if os.path.isfile(target):
        return target
    compiler = shutil.which(os.environ.get('CXX', 'g++'))
    if compiler is None:
        raise IRNError('no C++ compiler (g++) found to build %s' % _SOURCE)
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # MindSpore's oneDNN uses the threadpool runtime; the packaged headers say OpenMP.
        inc = os.path.join(tmp, 'include')
        shutil.copytree(os.path.join(include, 'oneapi'), os.path.join(inc, 'oneapi'))
        config = os.path.join(inc, 'oneapi', 'dnnl', 'dnnl_config.h')
        with open(config) as f:
            text = f.read()
        for key in ('DNNL_CPU_THREADING_RUNTIME', 'DNNL_CPU_RUNTIME'):
            text = text.replace('#define %s DNNL_RUNTIME_OMP' % key,
                                '#define %s DNNL_RUNTIME_THREADPOOL' % key)
        with open(config, 'w') as f:
            f.write(text)
        out = os.path.join(tmp, 'dnnl_conv.so')
        cmd = [compiler, '-O2', '-std=c++17', '-shared', '-fPIC', '-I', inc, _SOURCE, '-o', out,
               '-L', lib, '-l:libdnnl.so.3', '-Wl,-rpath,' + lib, '-lpthread']
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise IRNError('building %s failed: %s' % (_SOURCE, proc.stderr.strip().splitlines()[-1:]))
        os.replace(out, target)
    return target


def _bprop(backward, k, lrelu):
    """The bprop of the forward op with ``k`` pieces (graph mode wants explicit parameters;
    no helper calls, to keep the call depth of big graphs such as x8 small)."""
    if lrelu:  # the backward op also takes the output (its sign gives LeakyReLU's slope)
        def bprop1(x1, w, b, out, dout):
            return backward(dout, out, x1, w)

        def bprop2(x1, x2, w, b, out, dout):
            return backward(dout, out, x1, x2, w)

        def bprop3(x1, x2, x3, w, b, out, dout):
            return backward(dout, out, x1, x2, x3, w)

        def bprop4(x1, x2, x3, x4, w, b, out, dout):
            return backward(dout, out, x1, x2, x3, x4, w)

        def bprop5(x1, x2, x3, x4, x5, w, b, out, dout):
            return backward(dout, out, x1, x2, x3, x4, x5, w)
    else:
        def bprop1(x1, w, b, out, dout):
            return backward(dout, x1, w)

        def bprop2(x1, x2, w, b, out, dout):
            return backward(dout, x1, x2, w)

        def bprop3(x1, x2, x3, w, b, out, dout):
            return backward(dout, x1, x2, x3, w)

        def bprop4(x1, x2, x3, x4, w, b, out, dout):
            return backward(dout, x1, x2, x3, x4, w)

        def bprop5(x1, x2, x3, x4, x5, w, b, out, dout):
            return backward(dout, x1, x2, x3, x4, x5, w)
    return (bprop1, bprop2, bprop3, bprop4, bprop5)[k - 1]


# Shape / dtype functions of the ops (closures: MindSpore counts default arguments as inputs).
def _forward_shape(k):
    def shape(*s):
        return [s[0][0], s[k][0], s[0][2], s[0][3]]  # pieces..., w, b
    return shape


def _backward_shape(k, lead):
    def shape(*s):
        return tuple(s[lead:lead + k]) + (s[lead + k], [s[lead + k][0]])  # dx_i..., dw, db
    return shape


def _same_dtype(count):
    def dtype(*d):
        return d[0] if count == 1 else (d[0],) * count
    return dtype


def _make_ops(so):
    """All Custom ops of the library: ``ops[lrelu][k - 1]`` takes ``k`` pieces (1-5); ``ops[2]``
    is the coupling scale of :func:`exp_scale`.

    Created up front: a Custom primitive cannot be instantiated inside a graph.
    """
    table = []
    for lrelu in (False, True):
        name = 'IrnConvLrelu' if lrelu else 'IrnConv'
        lead = 2 if lrelu else 1  # dy [, y]
        row = []
        for k in range(1, 6):
            backward = ops.Custom(f'{so}:{name}Backward{k}', func_type='aot',
                                  out_shape=_backward_shape(k, lead), out_dtype=_same_dtype(k + 2))
            row.append(ops.Custom(f'{so}:{name}Forward{k}', func_type='aot',
                                  out_shape=_forward_shape(k), out_dtype=_same_dtype(1),
                                  bprop=_bprop(backward, k, lrelu)))
        table.append(tuple(row))
    backward = ops.Custom(f'{so}:IrnExpScaleBackward', func_type='aot',
                          out_shape=lambda h, c, e, de: (h, c), out_dtype=_same_dtype(2))
    scale = ops.Custom(f'{so}:IrnExpScaleForward', func_type='aot', out_shape=lambda h, c: h,
                       out_dtype=_same_dtype(1), bprop=_exp_scale_bprop(backward))
    return tuple(table) + (scale,)


def _exp_scale_bprop(backward):
    def bprop(h, c, out, dout):
        return backward(h, c, out, dout)
    return bprop


def select(device_target):
    """Pick the conv backend for ``device_target`` (see the module docstring); return its name."""
    want = os.environ.get('IRN_CONV', 'auto')
    if want not in ('auto', 'dnnl', 'mindspore'):
        raise IRNError('IRN_CONV=%s: expected auto, dnnl or mindspore' % want)
    _state['ops'] = None
    _state['precise'] = device_target == 'CPU'
    if want == 'mindspore' or (want == 'auto' and device_target != 'CPU'):
        return 'mindspore'
    if device_target != 'CPU':
        raise IRNError('IRN_CONV=dnnl needs --device_target CPU, got %s' % device_target)
    try:
        _state['ops'] = _make_ops(build())
    except IRNError as err:
        if want == 'dnnl':
            raise
        _LOG.warning('fast CPU conv unavailable (%s); using MindSpore Conv2D', err)
    return backend()


def backend():
    """The convolution backend graphs traced now will use: 'dnnl' or 'mindspore'."""
    return 'mindspore' if _state['ops'] is None else 'dnnl'


@contextlib.contextmanager
def mindspore_conv():
    """Graphs traced inside this block use MindSpore's own kernels only (Conv2D, float32 exp).

    For dynamic-shape graphs (``Cell.set_inputs`` with ``None`` sizes; the custom ops support
    static shapes only) and exported graphs (portable: no custom op, no float64). A graph is
    traced once, on its first call, so wrapping every call of such a Cell is cheap.
    """
    saved = dict(_state)
    _state.update(ops=None, precise=False)
    try:
        yield
    finally:
        _state.update(saved)


def dense_conv(pieces, weight, bias, lrelu):
    """``act(conv3x3(cat(pieces, channels), weight) + bias)``, act = LeakyReLU(0.2) if ``lrelu``.

    3x3 convolution, stride 1, zero padding 1; ``pieces`` is a tuple of NCHW tensors.
    """
    if _state['ops'] is not None and pieces[0].dtype == ms.float32:
        return _state['ops'][1 if lrelu else 0][len(pieces) - 1](*pieces, weight, bias)
    x = pieces[0] if len(pieces) == 1 else ops.cat(pieces, 1)
    y = conv3x3(x, weight, bias)
    return ops.leaky_relu(y, 0.2) if lrelu else y


def conv3x3(x, weight, bias):
    """MindSpore's own 3x3 convolution, stride 1, zero padding 1, plus ``bias``.

    The ``Conv2D`` primitive, as ``ops.conv2d`` uses it: ``ops.conv2d`` loses its ``pad_mode``
    argument after MindSpore 2.9 (and ``pad_mode='pad'`` is the only way to ask it for
    explicit padding before), while the primitive keeps ``pad_mode`` / ``pad``.
    """
    y = ops.Conv2D(weight.shape[0], (3, 3), pad_mode='pad', pad=1)(x, weight)
    return ops.bias_add(y, bias)


def exp_scale(h, clamp, half=False):
    """``exp(clamp * (2 * sigmoid(h) - 1))``, the coupling's scale (see the module docstring).

    ``half``: the block runs at AMP O1 (float16 sub-networks), where MindSpore's kernels stay.
    """
    if _state['precise'] and not half and h.dtype == ms.float32:
        if _state['ops'] is not None:
            return _state['ops'][2](h, ms.Tensor([clamp], ms.float32))
        return ops.exp(clamp * (ops.sigmoid(h.astype(ms.float64)) * 2 - 1)).astype(ms.float32)
    return ops.exp(clamp * (ops.sigmoid(h) * 2 - 1))
