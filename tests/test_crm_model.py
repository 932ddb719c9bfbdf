"""model: IRN-CRM in the registry: training (IRN frozen) with exact resume, val.py, infer.py,
export.py, on a tiny IRN (the irn_crm_x2 fixture's) and a tiny CRM."""
import csv
import os
import sys

import cv2
import numpy as np
import pytest

from conftest import DATA, ROOT
from src.config import load_config
from src.utils.checkpoint import read_checkpoint
from src.utils.errors import IRNError

G_PTH = os.path.join(DATA, 'irn_crm_x2.pth')
CRM_PTH = os.path.join(DATA, 'irn_crm_x2_R.pth')
TRAIN_YML = os.path.join(ROOT, 'src', 'options', 'train_IRN-Compression_x2_q90.yml')
TINY = ['network_G.block_num=[1]', 'network_R.nf=8', 'network_R.nb=1', 'network_R.gc=4',
        'datasets.train.GT_size=32', 'datasets.train.batch_size=2', 'logger.print_freq=2',
        'train.niter=6', 'logger.save_checkpoint_freq=3', 'train.val_freq=6', 'name=crm']


def _images(folder, sizes=((32, 48), (40, 36))):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        img = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 2.0)
        cv2.imwrite(str(folder / f'im{i}.png'), np.round(img * 255).astype(np.uint8))
    return str(folder)


def _opt(out, *extra):
    opt = load_config(TRAIN_YML, TINY + list(extra), device_target='CPU',
                      data_path=os.path.join(ROOT, 'data', 'sample', 'train'), output_dir=str(out))
    opt['path']['pretrain_model_G'] = G_PTH
    return opt


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 6-iteration CRM run (states at 3 and 6, validation at 6) and its folder."""
    from src.trainer import Trainer
    out = tmp_path_factory.mktemp('crm_run')
    opt = _opt(out)
    opt['datasets']['val']['dataroot_GT'] = _images(out / 'val')
    trainer = Trainer(opt)
    g_before = {p.name: p.asnumpy().copy() for p in trainer.net.irn.get_parameters()}
    trainer.run()
    return trainer, out / 'crm', g_before


def test_training_freezes_irn_logs_and_resumes_exactly(trained, tmp_path):
    from src.trainer import Trainer
    from src.train_log import read_csv
    full, run_dir, g_before = trained
    assert sum(p.size for p in full.net.trainable_params()) == sum(
        p.size for p in full.net.crm.get_parameters())  # only the CRM trains
    for p in full.net.irn.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), g_before[p.name])
    rows = read_csv(str(run_dir / 'loss.csv'))
    assert [r['iter'] for r in rows] == [2, 4, 6] and all(r['l_jpeg'] == r['loss'] for r in rows)
    val = read_csv(str(run_dir / 'val.csv'))
    assert [r['iter'] for r in val] == [6] and val[0]['bpp'] > 0 and 'psnr_restore' in val[0]
    opt = _opt(tmp_path, f"path.resume_state={run_dir / 'checkpoints' / 'state_00000003.ckpt'}")
    resumed = Trainer(opt)
    assert resumed.iteration == 3
    resumed.run()
    for name, cell in full.model.state_cells().items():
        theirs = {p.name: p for p in resumed.model.state_cells()[name].get_parameters()}
        for p in cell.get_parameters():
            np.testing.assert_allclose(theirs[p.name].asnumpy(), p.asnumpy(), atol=1e-6, rtol=0,
                                       err_msg=p.name)
    weights, arch = read_checkpoint(str(run_dir / 'final_G.ckpt'))
    assert arch['model'] == 'IRN-CRM' and arch['crm'] == {'in_nc': 3, 'out_nc': 3, 'nf': 8,
                                                          'nb': 1, 'gc': 4}
    assert 'operations.1.F.conv1.weight' in weights and 'conv_first.weight' in weights


def test_config_errors(tmp_path):
    from src.trainer import Trainer
    with pytest.raises(IRNError, match='add_joint_loss is not supported'):
        load_config(TRAIN_YML, ['train.add_joint_loss=true'])
    with pytest.raises(IRNError, match=r'train.jpg_quality must be in 1..100'):
        load_config(TRAIN_YML, ['train.jpg_quality=0'])
    with pytest.raises(IRNError, match="unknown key 'network_R.nc'"):
        load_config(TRAIN_YML, ['network_R.nc=3'])
    opt = _opt(tmp_path)
    opt['path']['pretrain_model_G'] = None
    with pytest.raises(IRNError, match='pretrain_model_G: the CRM is trained for a trained'):
        Trainer(opt)


def test_val_report_and_pairing(trained, tmp_path):
    from val import main as val_main
    _, run_dir, _ = trained
    data = _images(tmp_path / 'set')
    report = str(tmp_path / 'rep.json')
    assert val_main(['--ckpt', str(run_dir / 'final_G.ckpt'), '--data_path', data, '--report',
                     report, '--z_mode', 'zero', '--no_progress', '--save_images',
                     '--output_dir', str(tmp_path / 'out')]) == 0
    with open(str(tmp_path / 'rep.csv')) as f:
        rows = list(csv.DictReader(f))
    assert [r['image'] for r in rows] == ['im0', 'im1', 'MEAN']
    assert {'bpp', 'psnr_restore', 'psnr_y', 'lr_psnr_y'} <= set(rows[0])
    assert float(rows[0]['bpp']) > 0
    assert os.path.isfile(tmp_path / 'out' / 'set' / 'LR_restored' / 'im0.png')
    # the authors' two files: an IRN .pth and a CRM .pth
    cfg = os.path.join(ROOT, 'src', 'options', 'test_IRN-Compression_x2_q90.yml')
    assert val_main(['network_G.block_num=[1]', '--config', cfg, '--ckpt', G_PTH, '--crm',
                     CRM_PTH, '--data_path', data, '--no_progress']) == 0
    with pytest.raises(IRNError, match='give the CRM to pair it with'):
        val_main(['network_G.block_num=[1]', '--config', cfg, '--ckpt', G_PTH, '--data_path',
                  data, '--no_progress'])


def test_infer_and_export_with_the_bundled_crm(trained, tmp_path):
    from export import main as export_main
    from infer import main as infer_main
    _, run_dir, _ = trained
    ckpt = str(run_dir / 'final_G.ckpt')
    img = os.path.join(_images(tmp_path / 'in', ((21, 30),)), 'im0.png')
    assert infer_main(['roundtrip', '--ckpt', ckpt, '--input', img, '--output',
                       str(tmp_path / 'rt')]) == 0  # JPEG q90 LR by default, CRM-restored
    assert os.path.isfile(tmp_path / 'rt' / 'im0_lr.jpg')
    assert cv2.imread(str(tmp_path / 'rt' / 'im0_rt.png')).shape == (21, 30, 3)
    assert export_main(['--ckpt', ckpt, '--output_dir', str(tmp_path / 'ex')]) == 0
    names = sorted(os.listdir(tmp_path / 'ex'))
    assert names == ['irn_crm_x2_crm.mindir', 'irn_crm_x2_down.mindir', 'irn_crm_x2_up.mindir']


@pytest.mark.skipif(not os.path.isfile(os.path.join(os.path.dirname(sys.executable), 'msrun')),
                    reason='msrun not installed next to this python')
def test_msrun_two_workers_equal_single_process(tmp_path):
    import subprocess
    from test_distributed import free_port
    import train
    args = ['--config', TRAIN_YML, '--device_target', 'CPU', '--data_path',
            os.path.join(ROOT, 'data', 'sample', 'train'), '--ckpt', G_PTH, 'name=dp',
            'datasets.train.batch_size=4', 'train.niter=4', 'logger.save_checkpoint_freq=4'] + [
        o for o in TINY if o.split('=')[0] not in ('datasets.train.batch_size', 'train.niter',
                                                   'logger.save_checkpoint_freq', 'name')]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    proc = subprocess.run(['msrun', '--worker_num=2', '--local_worker_num=2',
                           f'--master_port={free_port()}', '--join=True',
                           f'--log_dir={tmp_path / "logs"}', 'tests/dist_worker.py', *args,
                           '--output_dir', str(tmp_path / 'dp')], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0, r1 = (np.load(tmp_path / 'dp' / 'dp' / f'rank{r}.npz') for r in (0, 1))
    assert all(np.array_equal(r0[k], r1[k]) for k in r0.files)
    single = train.build_trainer(args + ['--output_dir', str(tmp_path / 'single')])
    single.run()
    for p in single.net.get_parameters():
        np.testing.assert_allclose(r0[p.name], p.asnumpy(), rtol=0, atol=1e-6, err_msg=p.name)
