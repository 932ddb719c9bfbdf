"""export.py: the exported MINDIR / ONNX graphs compute what the Cells compute."""
import os
import subprocess

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import DATA, ROOT
from export import export_graphs, main as export_main
from src.network import Quantization
from src.inference import QuantizeLR, DownscaleNet, UpscaleNet, load_network
from src.utils.errors import IRNError

PTH = os.path.join(DATA, 'irn_x4_tiny.pth')


@pytest.fixture(scope='module')
def net():
    return load_network(PTH, scale=4)


def _inputs(net, h, w, seed):
    rng = np.random.default_rng(seed)
    hr = rng.random((1, 3, h, w)).astype(np.float32)
    lr = np.round(rng.random((1, 3, h // 4, w // 4)) * 255).astype(np.float32) / 255
    z = rng.standard_normal((1, net.channel_out - 3, h // 4, w // 4)).astype(np.float32)
    return hr, lr, z


def test_mindir_dynamic_matches_cell_on_two_sizes(net, tmp_path):
    prefix = str(tmp_path / 'irn_x4')
    paths = export_graphs(net, prefix, 'MINDIR')
    assert [os.path.basename(p) for p in paths] == ['irn_x4_down.mindir', 'irn_x4_up.mindir']
    down_graph = nn.GraphCell(ms.load(paths[0]))
    up_graph = nn.GraphCell(ms.load(paths[1]))
    down, up = DownscaleNet(net), UpscaleNet(net)
    for seed, (h, w) in enumerate([(32, 48), (40, 24)]):
        hr, lr, z = _inputs(net, h, w, seed)
        want = down(Tensor(hr)).asnumpy()
        got = down_graph(Tensor(hr)).asnumpy()
        assert got.shape == (1, 3, h // 4, w // 4)
        np.testing.assert_allclose(got, want, atol=1e-5)
        want = up(Tensor(lr), Tensor(z)).asnumpy()
        got = up_graph(Tensor(lr), Tensor(z)).asnumpy()
        assert got.shape == (1, 3, h, w)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnx_runs_in_onnxruntime(net, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    h, w = 32, 48
    paths = export_graphs(net, str(tmp_path / 'irn'), 'ONNX', h, w)
    hr, lr, z = _inputs(net, h, w, 3)
    sess = ort.InferenceSession(paths[0], providers=['CPUExecutionProvider'])
    assert [i.name for i in sess.get_inputs()] == ['hr']
    got = sess.run(None, {'hr': hr})[0]
    want = DownscaleNet(net)(Tensor(hr)).asnumpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    sess = ort.InferenceSession(paths[1], providers=['CPUExecutionProvider'])
    assert [i.name for i in sess.get_inputs()] == ['lr', 'z']
    got = sess.run(None, {'lr': lr, 'z': z})[0]
    np.testing.assert_allclose(got, UpscaleNet(net)(Tensor(lr), Tensor(z)).asnumpy(), atol=1e-4)


def test_export_quantisation_equals_network_quantisation():
    ties = (np.arange(256) + 0.5) / 255  # exact .5 cases after *255 in float32 where they exist
    x = np.concatenate([np.random.default_rng(0).random(5000) * 1.4 - 0.2, ties,
                        np.nextafter(ties, 2), np.nextafter(ties, -1)]).astype(np.float32)
    want = Quantization()(Tensor(x)).asnumpy()
    np.testing.assert_array_equal(QuantizeLR()(Tensor(x)).asnumpy(), want)


def test_graphs_have_no_random_ops(tmp_path, net):
    paths = export_graphs(net, str(tmp_path / 'g'), 'ONNX', 16, 16)
    for path in paths:
        with open(path, 'rb') as f:
            data = f.read()
        assert b'RandomNormal' not in data and b'StandardNormal' not in data


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(IRNError, match='x4 IRN.*x2 was asked'):
        export_main(['--ckpt', PTH, '--scale', '2', '--file_name', str(tmp_path / 'a')])
    with pytest.raises(IRNError, match='AIR export needs the Ascend backend'):
        export_main(['--ckpt', PTH, '--file_format', 'AIR'])
    assert 'AIR is deprecated in MindSpore 2.10' in capsys.readouterr().err  # MINDIR + Lite
    with pytest.raises(IRNError, match='static shapes'):
        export_main(['--ckpt', PTH, '--file_format', 'ONNX'])
    with pytest.raises(IRNError, match='multiple of the scale 4'):
        export_main(['--ckpt', PTH, '--file_format', 'ONNX', '--height', '30', '--width', '48'])


def test_run_export_script_usage():
    res = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'run_export.sh')],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and 'usage' in res.stderr.lower()
