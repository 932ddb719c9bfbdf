"""Image io, LMDB, training crops / augmentation / schedule, validation source."""
import logging
import os
import pickle
import shutil

import cv2
import lmdb
import numpy as np
import pytest

from src.data.bicubic import imresize
from src.data.io import list_images, modcrop, read_image, write_png
from src.data.lmdb_io import LmdbImages, create_lmdb
from src.data.faults import FAULT_BYTES, FAULT_FAILED, FAULT_SKIPPED, decode_faults
from src.data.pipeline import EpochSchedule, PatchMaker, build_train_source, create_train_dataset
from src.data.sources import FolderImages, ValidationSource, open_image_source
from src.utils.errors import IRNError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REAL = [os.path.join(DATA, "kodim23_crop.png"), os.path.join(DATA, "bridge_crop_gray.png")]


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, rgb):
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb)
    return str(path)


@pytest.fixture
def folder(tmp_path):
    """Mixed folder: real crops (RGB, grayscale), 16-bit, RGBA and random 8-bit images."""
    d = tmp_path / "imgs"
    d.mkdir()
    for p in REAL:
        shutil.copy(p, d)
    base = _rgb(40, 52, 1)
    cv2.imwrite(str(d / "c16.png"), base[..., ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(d / "d_rgba.png"), np.dstack([base[..., ::-1], np.full((40, 52), 7, np.uint8)]))
    _save(d / "e.bmp", _rgb(33, 47, 2))
    (d / "notes.txt").write_text("not an image")
    return d


# ---------------------------------------------------------------- image io

def test_read_image_conversions(tmp_path, caplog):
    rgb = _rgb(20, 24)
    ref = read_image(_save(tmp_path / "rgb.png", rgb))
    assert ref.dtype == np.float32 and ref.shape == (20, 24, 3)
    np.testing.assert_array_equal(ref, rgb.astype(np.float32) / np.float32(255))
    caplog.set_level(logging.INFO, logger="irn")
    cv2.imwrite(str(tmp_path / "a16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "a16.png"), ref)
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[..., ::-1], rgb[..., :1]]))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), ref)
    gray = read_image(_save(tmp_path / "g.png", rgb[..., 0]))
    assert gray.shape == (20, 24, 3)
    np.testing.assert_array_equal(gray[..., 2], ref[..., 0])
    assert any("16-bit" in r.message for r in caplog.records)
    real_gray = read_image(REAL[1])
    assert real_gray.shape == (72, 80, 3) and np.all(real_gray[..., 0] == real_gray[..., 2])


def test_read_image_rounds_16_bit(tmp_path):
    v = np.array([[0, 128, 129, 385, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), v)
    got = read_image(tmp_path / "g16.png")[..., 0] * 255
    np.testing.assert_allclose(got[0], [0, 0, 1, 1, 255], atol=1e-4)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_bad_files_raise_irnerror_naming_the_file(tmp_path, ext):
    good = tmp_path / ("good" + ext)
    _save(good, _rgb(64, 64))
    data = good.read_bytes()
    bad = tmp_path / ("trunc" + ext)
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(IRNError, match="trunc.*truncated"):
        read_image(bad)
    junk = tmp_path / ("junk" + ext)
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(IRNError, match="junk"):
        read_image(junk)
    with pytest.raises(IRNError, match="missing.*not found"):
        read_image(tmp_path / ("missing" + ext))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(IRNError, match="empty"):
        read_image(tmp_path / "empty.png")


def test_write_png_roundtrip(tmp_path):
    rgb = _rgb(9, 11)
    write_png(tmp_path / "sub" / "a.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "sub" / "a.png"), rgb / np.float32(255))
    f = rgb.astype(np.float32) / 255
    write_png(tmp_path / "b.png", f + 1e-3)
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), f)


def test_list_images_and_modcrop(folder, tmp_path):
    names = [os.path.basename(p) for p in list_images(folder)]
    assert names == ["bridge_crop_gray.png", "c16.png", "d_rgba.png", "e.bmp", "kodim23_crop.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(IRNError, match="no image"):
        list_images(tmp_path / "empty")
    with pytest.raises(IRNError, match="not found"):
        list_images(tmp_path / "nope")
    img = np.zeros((37, 53, 3))
    assert modcrop(img, 4).shape == (36, 52, 3) and modcrop(img[..., 0], 8).shape == (32, 48)
    with pytest.raises(IRNError, match="smaller than the scale"):
        modcrop(np.zeros((3, 10, 3)), 4, "tiny.png")


# ---------------------------------------------------------------- LMDB

def test_lmdb_equals_folder_and_script(folder, tmp_path):
    from scripts.create_lmdb import main
    out = tmp_path / "set.lmdb"
    assert main(["--input", str(folder), "--output", str(out)]) == 0
    meta = (out / "meta_info.txt").read_text().splitlines()
    assert meta[0] == "bridge_crop_gray.png (72,80,1) 1" and len(meta) == 5
    src, db = FolderImages(folder), open_image_source(out)
    assert isinstance(db, LmdbImages) and db.layout == "basicsr"
    assert db.names == src.names
    for i in range(len(src)):
        np.testing.assert_array_equal(db.read(i), src.read(i))
    assert main(["--input", str(folder), "--output", str(out)]) == 2  # refuses to overwrite
    db2 = pickle.loads(pickle.dumps(db))  # picklable for dataset workers
    np.testing.assert_array_equal(db2.read(0), src.read(0))


def _write_mmsr(path, images):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, bgr in images.items():
            txn.put(key.encode("ascii"), np.ascontiguousarray(bgr).tobytes())
    env.close()
    res = ["{}_{}_{}".format(b.shape[2], b.shape[0], b.shape[1]) for b in images.values()]
    with open(os.path.join(path, "meta_info.pkl"), "wb") as f:
        pickle.dump({"name": "t", "keys": list(images), "resolution": res}, f)


def test_mmsr_layout(folder, tmp_path):
    src = FolderImages(folder)
    bgr = {n: cv2.imread(p, cv2.IMREAD_COLOR) for n, p in zip(src.names, src.paths)}
    _write_mmsr(tmp_path / "m.lmdb", bgr)
    db = LmdbImages(tmp_path / "m.lmdb")
    assert db.layout == "mmsr" and db.names == src.names
    for i in range(len(src)):
        np.testing.assert_array_equal(db.read(i), src.read(i))


def test_corrupt_lmdb(folder, tmp_path):
    out = tmp_path / "c.lmdb"
    create_lmdb(folder, out, progress=False)
    (out / "meta_info.txt").rename(tmp_path / "meta.bak")
    with pytest.raises(IRNError, match="meta_info"):
        LmdbImages(out)
    (tmp_path / "meta.bak").rename(out / "meta_info.txt")
    with open(out / "meta_info.txt", "a") as f:
        f.write("ghost.png (4,4,3) 1\n")
    with pytest.raises(IRNError, match="holds 5 entries"):
        LmdbImages(out)
    with open(out / "meta_info.txt", "a") as f:
        f.write("garbage line\n")
    with pytest.raises(IRNError, match="malformed"):
        LmdbImages(out)
    garbage = tmp_path / "g.lmdb"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(os.urandom(8192))
    (garbage / "meta_info.txt").write_text("a.png (4,4,3) 1\n")
    with pytest.raises(IRNError, match="corrupt"):
        LmdbImages(garbage)
    _write_mmsr(tmp_path / "bad.lmdb", {"a": np.zeros((4, 4, 3), np.uint8)})
    with open(tmp_path / "bad.lmdb" / "meta_info.pkl", "wb") as f:
        pickle.dump({"keys": ["a"], "resolution": ["3_5_4"]}, f)
    with pytest.raises(IRNError, match="bytes stored"):
        LmdbImages(tmp_path / "bad.lmdb").read(0)
    _write_mmsr(tmp_path / "k.lmdb", {"a": np.zeros((4, 4, 3), np.uint8),
                                      "b": np.zeros((4, 4, 3), np.uint8)})
    with open(tmp_path / "k.lmdb" / "meta_info.pkl", "wb") as f:
        pickle.dump({"keys": ["a", "zz"], "resolution": ["3_4_4"]}, f)
    with pytest.raises(IRNError, match="k.lmdb:zz.*missing"):
        LmdbImages(tmp_path / "k.lmdb").read(1)
    env = lmdb.open(str(tmp_path / "p.lmdb"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"x", b"\x89PNG\r\n\x1a\n garbage IEND")
    env.close()
    (tmp_path / "p.lmdb" / "meta_info.txt").write_text("x.png (4,4,3) 1\n")
    with pytest.raises(IRNError, match="p.lmdb:x"):
        LmdbImages(tmp_path / "p.lmdb").read(0)


# ---------------------------------------------------------------- training samples

def _undo(img, hflip, vflip, rot90):
    if rot90:
        img = img.transpose(1, 0, 2)
    if vflip:
        img = img[::-1]
    if hflip:
        img = img[:, ::-1]
    return img


def _locate(hr_full, lr_full, hr_patch, lr_patch, scale):
    """Find (transform, y, x) such that both patches are that transform of aligned crops."""
    gt, lq = hr_patch.shape[0], lr_patch.shape[0]
    found = []
    for code in range(8):
        flags = (bool(code & 1), bool(code & 2), bool(code & 4))
        h, l = _undo(hr_patch, *flags), _undo(lr_patch, *flags)
        starts = np.argwhere(np.all(hr_full[:hr_full.shape[0] - gt + 1, :hr_full.shape[1] - gt + 1]
                                    == h[0, 0], axis=-1))
        for y, x in starts:
            if np.array_equal(hr_full[y:y + gt, x:x + gt], h):
                found.append((flags, y, x))
                assert y % scale == 0 and x % scale == 0
                ly, lx = y // scale, x // scale
                np.testing.assert_allclose(l, lr_full[ly:ly + lq, lx:lx + lq], rtol=0, atol=1e-6)
    return found


def test_aligned_crop_and_identical_augmentation():
    scale, gt = 4, 16
    u8 = _rgb(45, 58, 5)  # mod-crop -> 44 x 56
    hr_full = u8[:44, :56].astype(np.float32) / np.float32(255)
    lr_full = imresize(hr_full, 1 / scale)
    maker = PatchMaker(scale, gt, use_flip=True, use_rot=True)
    seen = set()
    for seed in range(64):
        hr, lr = maker(u8, np.random.default_rng(seed))
        assert hr.shape == (16, 16, 3) and lr.shape == (4, 4, 3) and lr.dtype == np.float32
        found = _locate(hr_full, lr_full, hr, lr, scale)
        assert len(found) == 1
        seen.add(found[0][0])
        if seed < 4:  # a float input gives the same pair as the uint8 one
            hr2, lr2 = maker(hr_full, np.random.default_rng(seed))
            np.testing.assert_array_equal(hr2, hr)
            np.testing.assert_allclose(lr2, lr, rtol=0, atol=1e-7)
    assert len(seen) == 8  # every flip / transpose combination occurs


def test_small_image_is_stretched():
    maker = PatchMaker(4, 32, use_flip=False, use_rot=False)
    u8 = _rgb(30, 50, 6)  # mod-crop 28 x 48 -> height stretched to 32
    prepared, stretched = maker.prepare(u8)
    assert stretched and prepared.shape == (32, 48, 3) and prepared.dtype == np.float32
    expect = cv2.resize(u8[:28, :48].astype(np.float32) / 255, (48, 32),
                        interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(prepared, expect, atol=1e-6)
    hr, lr = maker(u8, np.random.default_rng(0))
    assert hr.shape == (32, 32, 3) and lr.shape == (8, 8, 3)
    found = _locate(prepared, imresize(prepared, 0.25), hr, lr, 4)
    assert len(found) == 1 and found[0][1] == 0
    with pytest.raises(IRNError, match="multiple of the scale"):
        PatchMaker(4, 30)


def _opt(root, **kw):
    train = {"dataroot_GT": str(root), "batch_size": 2, "GT_size": 16, "use_flip": True,
             "use_rot": True, "use_shuffle": True, "n_workers": 1, "color": "RGB"}
    train.update(kw)
    return {"scale": 4, "datasets": {"train": train}, "train": {"niter": 12, "manual_seed": 3}}


def test_schedule_epochs_shards_and_resume(folder):
    sched = EpochSchedule(5, 2, seed=1)
    assert sched.batches_per_epoch == 2 and sched.samples_per_epoch == 4
    for e in range(3):
        assert sorted(sched.global_order(e)) == list(range(5))
    assert any(not np.array_equal(sched.global_order(0), sched.global_order(e)) for e in (1, 2, 3))
    r0, r1 = (EpochSchedule(6, 1, r, 2, seed=1) for r in (0, 1))
    assert sorted(np.concatenate([r0.order(4), r1.order(4)])) == list(range(6))
    with pytest.raises(IRNError, match="fewer than the batch size"):
        EpochSchedule(3, 4)

    src = build_train_source(_opt(folder))
    assert len(src) == 24 and src.schedule.batches_per_epoch == 2
    again = build_train_source(_opt(folder))
    resumed = build_train_source(_opt(folder), start_iter=5)
    assert len(resumed) == 14
    for k in (0, 3, 13):
        for a, b in zip(src[10 + k], resumed[k]):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(src[7], again[7]):
        np.testing.assert_array_equal(a, b)
    hr, lr = src[0]
    assert hr.shape == (3, 16, 16) and lr.shape == (3, 4, 4) and hr.dtype == np.float32
    with pytest.raises(IRNError, match="batch_size"):
        build_train_source(_opt(folder, batch_size=3), rank_size=2)
    with pytest.raises(IRNError, match="color"):
        build_train_source(_opt(folder, color="YCbCr"))


def test_lmdb_training_source_equals_folder(folder, tmp_path):
    create_lmdb(folder, tmp_path / "t.lmdb", progress=False)
    a, b = build_train_source(_opt(folder)), build_train_source(_opt(tmp_path / "t.lmdb"))
    for k in range(6):
        for x, y in zip(a[k], b[k]):
            np.testing.assert_array_equal(x, y)


def test_div2k_layout_and_validation_source(tmp_path):
    root = tmp_path / "DIV2K"
    for sub, n in (("DIV2K_train_HR", 4), ("DIV2K_valid_HR", 2)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            _save(root / sub / f"{i + 1:04d}.png", _rgb(37 + i, 41, i))
    src = build_train_source(_opt(root))
    assert src.images.path.endswith("DIV2K_train_HR") and len(src.images) == 4
    val = ValidationSource(root, 4)
    assert val.names == ["0001", "0002"] and len(val) == 2
    name, hr = val[1]
    assert name == "0002" and hr.shape == (36, 40, 3)
    np.testing.assert_array_equal(hr, read_image(root / "DIV2K_valid_HR" / "0002.png")[:36, :40])
    assert [n for n, _ in val] == ["0001", "0002"]
    with pytest.raises(IRNError, match="not found"):
        ValidationSource(tmp_path / "nowhere", 4)


def test_precomputed_lr_folder(tmp_path):
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    for i in range(2):
        u8 = _rgb(40, 48, 10 + i)
        _save(hr_dir / f"{i}.png", u8)
        lr = imresize(u8.astype(np.float32) / 255, 0.25)
        write_png(lr_dir / f"{i}x4.png", lr)
    src = build_train_source(_opt(hr_dir, dataroot_LQ=str(lr_dir), use_flip=False, use_rot=False))
    for k in range(4):
        hr, lr = src[k]
        epoch, pos, idx = src.schedule.locate(k)
        full_hr = read_image(hr_dir / f"{idx}.png")
        full_lr = read_image(lr_dir / f"{idx}x4.png")
        hr, lr = hr.transpose(1, 2, 0), lr.transpose(1, 2, 0)
        assert len(_locate(full_hr, full_lr, hr, lr, 4)) == 1
    _save(lr_dir / "1x4.png", _rgb(9, 9))
    with pytest.raises(IRNError, match="precomputed LR"):
        for k in range(4):
            src[k]


def test_bad_training_image_raise_or_skip(folder, caplog):
    (folder / "e.bmp").write_bytes(b"BM garbage")
    strict = build_train_source(_opt(folder))
    with pytest.raises(IRNError, match="e.bmp"):
        for k in range(len(strict)):
            strict[k]
    lenient = build_train_source(_opt(folder, skip_bad_images=True))
    with caplog.at_level(logging.WARNING, logger="irn"):
        samples = [lenient[k] for k in range(len(lenient))]
    assert len(samples) == 24 and any("e.bmp" in r.getMessage() for r in caplog.records)


def test_mindspore_dataset(folder):
    opt = _opt(folder)
    data = create_train_dataset(opt, start_iter=9)
    src = data.irn_source
    batches = list(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(batches) == 3
    hr, lr, fault = batches[1]
    assert fault.shape == (2, FAULT_BYTES) and not fault.any()  # no bad image: no fault row
    assert hr.shape == (2, 3, 16, 16) and lr.shape == (2, 3, 4, 4) and hr.dtype == np.float32
    np.testing.assert_array_equal(hr[1], src[3][0])
    np.testing.assert_array_equal(lr[0], src[2][1])


def _batches(opt, start_iter=0):
    data = create_train_dataset(opt, start_iter=start_iter)
    return list(data.create_tuple_iterator(num_epochs=1, output_numpy=True))


def test_bad_image_comes_out_of_the_workers_as_a_fault_row(folder):
    """A bad image never raises inside mindspore.dataset (2 worker processes here): its
    sample carries a FAILED row with the one-line message; with skip_bad_images the sample
    uses the next image and carries a SKIPPED row, and the data stays a pure function of the
    sample number (a resumed pipeline equals the uninterrupted one, 1 worker equals 2)."""
    (folder / "e.bmp").write_bytes(b"BM garbage")
    strict = _batches(_opt(folder, n_workers=2))
    assert len(strict) == 12
    faults = [(it, row, st, msg) for it, (hr, _, f) in enumerate(strict)
              for row, st, msg in decode_faults(f)]
    assert faults and all(st == FAULT_FAILED and msg.endswith("e.bmp: not a readable image "
                                                                "(unknown format or corrupt data)")
                          for _, _, st, msg in faults)
    assert all(not strict[it][0][row].any() for it, row, _, _ in faults)  # blank stand-ins
    skip = _opt(folder, skip_bad_images=True)
    lenient = build_train_source(skip)
    full = _batches(dict(skip, datasets={"train": dict(skip["datasets"]["train"], n_workers=2)}))
    skipped = [(it, row) for it, (_, _, f) in enumerate(full) for row, st, msg in decode_faults(f)
               if st == FAULT_SKIPPED and "e.bmp" in msg]
    assert [(it, row) for it, row, _, _ in faults] == skipped
    for it, (hr, lr, _) in enumerate(full):
        for row in range(2):
            a, b = lenient[2 * it + row]
            np.testing.assert_array_equal(hr[row], a)
            np.testing.assert_array_equal(lr[row], b)
    resumed = _batches(skip, start_iter=5)
    for a, b in zip(full[5:], resumed):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_png_chunks_are_checked_before_decoding(tmp_path):
    data = open(_save(tmp_path / "a.png", _rgb(30, 30)), "rb").read()
    hit = bytearray(data)
    hit[60] ^= 0xFF  # inside the image data
    (tmp_path / "b.png").write_bytes(bytes(hit))
    with pytest.raises(IRNError, match=r"b.png: corrupt PNG data \(checksum error in the IDAT"):
        read_image(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(data[:-20])
    with pytest.raises(IRNError, match="c.png: truncated PNG file"):
        read_image(tmp_path / "c.png")


def test_folder_of_sub_folders_is_scanned(tmp_path):
    """A training root such as train/{T91,BSD200}/ is read through its sub-folders."""
    for sub in ('T91', 'BSD200'):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    found = [os.path.relpath(p, tmp_path) for p in list_images(str(tmp_path))]
    assert found == [os.path.join('BSD200', 'a.png'), os.path.join('T91', 'a.png')]
    (tmp_path / 'empty').mkdir()
    with pytest.raises(IRNError, match='no image files'):
        list_images(str(tmp_path / 'empty'))
