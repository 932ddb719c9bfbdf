"""Training samples and the ``mindspore.dataset`` pipeline.

One training sample (the authors' LQGT dataset, phase 'train'):

1. read the HR image (folder or LMDB), mod-crop it to a multiple of ``scale``;
2. if a side is shorter than ``GT_size``, stretch that side to ``GT_size`` with
   bilinear interpolation (``cv2.INTER_LINEAR``, as the authors do);
3. the LR guide is MATLAB bicubic of the WHOLE HR image by ``1/scale`` (float, not
   rounded); an LR patch of ``GT_size // scale`` is taken at a random LR position
   and the HR patch at that position times ``scale``. Only the window of the
   resized image that is needed is computed (:func:`imresize_crop`, identical
   numbers), so nothing is cached and memory stays bounded;
4. the same random hflip / vflip / transpose is applied to both patches.

Sample order and randomness are pure functions of ``(seed, epoch, position)``:
each epoch is a permutation of the images seeded by ``(seed, epoch)``, split
across ranks like a distributed sampler (padded by wrapping around); crop and
flips of a sample use a generator seeded by ``(seed, epoch, position)``. So a
run resumed at iteration ``k`` (``start_iter=k``) sees exactly the batches the
uninterrupted run would have seen, whatever the number of workers.
"""

import logging
import math

import cv2
import numpy as np

from src.data.bicubic import imresize_crop
from src.data.faults import FAULT_FAILED, FAULT_NONE, FAULT_SKIPPED, encode_fault
from src.data.io import modcrop, uint8_to_float
from src.data.sources import open_image_source
from src.utils.errors import IRNError

__all__ = ["augment", "random_augment", "PatchMaker", "EpochSchedule", "TrainSource", "build_train_source",
           "create_train_dataset"]

_logger = logging.getLogger("irn")


def augment(images, hflip=False, vflip=False, rot90=False):
    """Apply the same horizontal flip / vertical flip / transpose to HxWxC arrays."""
    out = []
    for img in images:
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if rot90:
            img = img.transpose(1, 0, 2)
        out.append(img)
    return out


def random_augment(images, rng, use_flip, use_rot):
    """The authors' random augmentation: hflip (``use_flip``), vflip and transpose
    (``use_rot``), each with probability 0.5, drawn from ``rng`` in that order."""
    hflip = use_flip and rng.random() < 0.5
    vflip = use_rot and rng.random() < 0.5
    rot90 = use_rot and rng.random() < 0.5
    return augment(images, hflip, vflip, rot90)


class PatchMaker:
    """Turn one HR image into an aligned (HR patch, LR-guide patch) pair.

    Args:
        scale (int): rescaling factor.
        gt_size (int): HR patch size (a multiple of ``scale``).
        use_flip (bool): random horizontal flip.
        use_rot (bool): random vertical flip and random transpose.
    """

    def __init__(self, scale, gt_size, use_flip=True, use_rot=True):
        self.scale, self.gt_size = int(scale), int(gt_size)
        if self.gt_size <= 0 or self.gt_size % self.scale:
            raise IRNError(f"GT_size {gt_size} must be a positive multiple of the scale {scale}")
        self.lq_size = self.gt_size // self.scale
        self.use_flip, self.use_rot = bool(use_flip), bool(use_rot)
        self._warned_small = False

    def prepare(self, hr, name="image"):
        """Mod-crop, then stretch sides shorter than ``GT_size``; returns (hr, stretched).

        A stretched image comes back as float32 in [0, 1]; otherwise the dtype is kept.
        """
        hr = modcrop(hr, self.scale, name)
        h, w = hr.shape[:2]
        if h >= self.gt_size and w >= self.gt_size:
            return hr, False
        if not self._warned_small:
            self._warned_small = True
            _logger.warning("%s: %dx%d is smaller than GT_size %d, side(s) stretched bilinearly "
                            "(logged once)", name, h, w, self.gt_size)
        if hr.dtype == np.uint8:
            hr = uint8_to_float(hr)
        size = (max(w, self.gt_size), max(h, self.gt_size))
        return cv2.resize(np.ascontiguousarray(hr), size, interpolation=cv2.INTER_LINEAR), True

    def __call__(self, hr, rng, lr_full=None, name="image"):
        """Make a training pair.

        Args:
            hr (np.ndarray): HxWx3 RGB HR image (not yet mod-cropped), uint8 or float32
                in [0, 1]; uint8 is converted (``/ 255``) only where it is needed,
                with the same values as converting the whole image first.
            rng (np.random.Generator): randomness for the crop and the flips.
            lr_full (np.ndarray | None): a precomputed float LR of the mod-cropped HR;
                None computes the MATLAB bicubic guide.
            name (str): image name for messages.

        Returns:
            tuple(np.ndarray, np.ndarray): HR patch (GT_size, GT_size, 3) and LR patch
            (GT_size/scale, GT_size/scale, 3), float32 HWC, contiguous.
        """
        hr, stretched = self.prepare(hr, name)
        s, lq = self.scale, self.lq_size
        lh, lw = hr.shape[0] // s, hr.shape[1] // s
        if lr_full is not None and not stretched and lr_full.shape[:2] != (lh, lw):
            raise IRNError(f"{name}: precomputed LR is {lr_full.shape[0]}x{lr_full.shape[1]}, "
                           f"expected {lh}x{lw} for the mod-cropped HR at scale {s}")
        top = int(rng.integers(0, lh - lq + 1))
        left = int(rng.integers(0, lw - lq + 1))
        to_float = uint8_to_float if hr.dtype == np.uint8 else None
        if lr_full is None or stretched:
            lr = imresize_crop(hr, 1.0 / s, top, left, lq, lq, preprocess=to_float)
        else:
            lr = lr_full[top:top + lq, left:left + lq]
        hr = hr[top * s:top * s + self.gt_size, left * s:left * s + self.gt_size]
        if to_float is not None:
            hr = to_float(hr)
        hr, lr = random_augment([hr, lr], rng, self.use_flip, self.use_rot)
        return (np.ascontiguousarray(hr, dtype=np.float32),
                np.ascontiguousarray(lr, dtype=np.float32))


class EpochSchedule:
    """Which image every training sample of one rank uses.

    Args:
        num_images (int): images in the training set.
        batch_size (int): per-rank batch size.
        rank_id, rank_size (int): this rank and the number of ranks.
        seed (int): base seed of the per-epoch permutations.
        shuffle (bool): permute each epoch (False keeps file order).
    """

    def __init__(self, num_images, batch_size, rank_id=0, rank_size=1, seed=0, shuffle=True):
        if not 0 <= rank_id < rank_size:
            raise IRNError(f"rank_id {rank_id} is not in [0, {rank_size})")
        self.num_images, self.batch_size = int(num_images), int(batch_size)
        self.rank_id, self.rank_size = int(rank_id), int(rank_size)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.per_rank = math.ceil(self.num_images / self.rank_size)
        self.batches_per_epoch = self.per_rank // self.batch_size
        if self.batches_per_epoch == 0:
            raise IRNError(f"{self.num_images} training images over {self.rank_size} rank(s) "
                           f"give {self.per_rank} per rank, fewer than the batch size "
                           f"{self.batch_size}")
        self.samples_per_epoch = self.batches_per_epoch * self.batch_size
        self._cached = (None, None)

    def global_order(self, epoch):
        """All ranks' image indices of ``epoch`` (padded by wrapping to a multiple of ranks)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_images)
        else:
            order = np.arange(self.num_images)
        pad = self.per_rank * self.rank_size - self.num_images
        return np.concatenate([order, np.resize(order, pad)]) if pad else order

    def order(self, epoch):
        """This rank's image indices for ``epoch`` (positions rank_id, rank_id + rank_size, ...)."""
        if self._cached[0] != epoch:
            self._cached = (epoch, self.global_order(epoch)[self.rank_id::self.rank_size])
        return self._cached[1]

    def locate(self, sample):
        """Global sample number -> (epoch, position in this rank's epoch, image index)."""
        epoch, pos = divmod(int(sample), self.samples_per_epoch)
        return epoch, pos, int(self.order(epoch)[pos])

    def epoch_of_iter(self, iteration):
        """Epoch (0-based) that iteration ``iteration`` (0-based) belongs to."""
        return int(iteration) // self.batches_per_epoch


class TrainSource:
    """Random-access source of training samples: item k -> (hr CHW, lr_ref CHW) float32.

    Item ``k`` is global sample ``start_sample + k`` of this rank, so batch ``j``
    of the batched dataset is training iteration ``start_sample / batch + j``.

    Bad images: by default an unreadable image raises :class:`IRNError` naming it. With
    ``skip_bad_images`` the sample uses the next readable image of the epoch's order
    instead (with the crop and flips the sample would have had), so which image a sample
    uses stays a pure function of (seed, sample number) and of which files are bad, in any
    process and after any resume; ``_bad`` only remembers failures so that a bad file is
    not decoded again by the same process.

    Args:
        images: HR source (``FolderImages`` / ``LmdbImages``).
        schedule (EpochSchedule): sample -> image mapping.
        patch_maker (PatchMaker): crop / LR guide / augmentation.
        num_samples (int): items exposed.
        start_sample (int): first global sample.
        lq_images: optional precomputed LR source paired by index with ``images``.
        skip_bad_images (bool): on an unreadable image, use the next one of the epoch
            (logged) instead of raising.
    """

    def __init__(self, images, schedule, patch_maker, num_samples, start_sample=0,
                 lq_images=None, skip_bad_images=False):
        self.images, self.schedule, self.patch_maker = images, schedule, patch_maker
        self.num_samples, self.start_sample = int(num_samples), int(start_sample)
        self.lq_images, self.skip_bad_images = lq_images, bool(skip_bad_images)
        self._bad = {}  # image index -> its error message (a memo: failures are deterministic)
        self._blank = None

    def __len__(self):
        return self.num_samples

    def _read(self, sample):
        """(hr, lr, messages of the bad images skipped) of global sample ``sample``."""
        epoch, pos, index = self.schedule.locate(sample)
        rng = np.random.default_rng([self.schedule.seed, epoch,
                                     pos * self.schedule.rank_size + self.schedule.rank_id])
        order = self.schedule.order(epoch)
        skipped = []
        for attempt in range(len(order)):
            idx = index if attempt == 0 else int(order[(pos + attempt) % len(order)])
            if idx not in self._bad:
                try:
                    hr = self.images.read_uint8(idx)
                    lr_full = None if self.lq_images is None else self.lq_images.read(idx)
                    return (*self.patch_maker(hr, rng, lr_full, self.images.describe(idx)),
                            skipped)
                except IRNError as exc:
                    if not self.skip_bad_images:
                        raise
                    self._bad[idx] = str(exc)
            skipped.append(self._bad[idx])
        raise IRNError(f"{self.images.path}: no readable training image left")

    def sample(self, sample):
        """The (hr, lr) HWC float32 patches of global sample number ``sample``."""
        hr, lr, skipped = self._read(sample)
        for message in skipped:
            _logger.warning("skipping bad training image: %s", message)
        return hr, lr

    def __getitem__(self, k):
        if not 0 <= k < self.num_samples:
            raise IndexError(k)
        hr, lr = self.sample(self.start_sample + k)
        return hr.transpose(2, 0, 1).copy(), lr.transpose(2, 0, 1).copy()

    def item(self, k):
        """Item ``k`` with its ``fault`` row, never raising for a bad image.

        What ``mindspore.dataset`` iterates: an unreadable image (without
        ``skip_bad_images``) gives blank patches and a FAILED row carrying the one-line
        message, which the training loop turns back into an :class:`IRNError` in the main
        process (an exception raised here would surface as a long dataset traceback);
        images skipped for this sample are reported in a SKIPPED row.
        """
        if not 0 <= k < self.num_samples:
            raise IndexError(k)
        try:
            hr, lr, skipped = self._read(self.start_sample + k)
            fault = encode_fault(FAULT_SKIPPED, "\n".join(skipped)) if skipped \
                else encode_fault(FAULT_NONE)
        except IRNError as exc:
            hr, lr = self._blank_patches()
            fault = encode_fault(FAULT_FAILED, str(exc))
        return hr.transpose(2, 0, 1).copy(), lr.transpose(2, 0, 1).copy(), fault

    def _blank_patches(self):
        """Zero patches of the shapes this source's samples have (stand-ins for a bad one)."""
        if self._blank is None:
            size = self.patch_maker.gt_size
            hr, lr = self.patch_maker(np.zeros((size, size, 3), np.uint8),
                                      np.random.default_rng(0))
            self._blank = (np.zeros_like(hr), np.zeros_like(lr))
        return self._blank


class _Items:
    """What ``GeneratorDataset`` reads: :meth:`TrainSource.item` by index."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, k):
        return self.source.item(k)


def _get(d, key, default=None):
    value = d.get(key, default) if d is not None else default
    return default if value is None else value


def build_train_source(opt, rank_id=0, rank_size=1, seed=None, start_iter=0, total_iters=None):
    """The :class:`TrainSource` described by the parsed training config ``opt``.

    Reads ``opt['scale']``, ``opt['datasets']['train']`` (``dataroot_GT``,
    ``dataroot_LQ``, ``use_shuffle``, ``batch_size`` (total over ranks, as the
    authors), ``GT_size``, ``use_flip``, ``use_rot``, ``color``, ``skip_bad_images``,
    ``use_grey``: IRN-Color's (RGB patch, grey) samples, see :mod:`src.data.grey`)
    and ``opt['train']`` (``niter``, ``manual_seed``) unless given explicitly.
    It exposes iterations ``start_iter .. total_iters - 1``.
    """
    try:
        scale = int(opt["scale"])
        dopt = opt["datasets"]["train"]
    except (KeyError, TypeError) as exc:
        raise IRNError(f"config: missing key {exc} (need scale and datasets.train)") from exc
    topt = opt.get("train") or {}
    if seed is None:
        seed = _get(topt, "manual_seed", 0)
    if total_iters is None:
        total_iters = _get(topt, "niter")
        if total_iters is None:
            raise IRNError("config: train.niter is missing (total training iterations)")
    total_iters, start_iter = int(total_iters), int(start_iter)
    if not 0 <= start_iter <= total_iters:
        raise IRNError(f"start_iter {start_iter} is outside [0, niter={total_iters}]")
    if _get(dopt, "color", "RGB") not in ("RGB",):
        raise IRNError(f"config: datasets.train.color {dopt.get('color')!r} is not supported "
                       f"(only 'RGB')")
    batch = int(_get(dopt, "batch_size", 16))
    if batch <= 0 or batch % rank_size:
        raise IRNError(f"config: datasets.train.batch_size {batch} must be a positive multiple "
                       f"of the number of devices {rank_size}")
    images = open_image_source(dopt.get("dataroot_GT"), phase="train")
    lq_images = None
    if dopt.get("dataroot_LQ"):
        lq_images = open_image_source(dopt["dataroot_LQ"], phase="train_lq")
        if len(lq_images) != len(images):
            raise IRNError(f"{lq_images.path}: {len(lq_images)} LR images but "
                           f"{len(images)} HR images in {images.path}")
        _logger.info("using precomputed LR images from %s (rounded to 8 bit)", lq_images.path)
    if dopt.get("lr_cache_dir"):
        _logger.info("lr_cache_dir is ignored: the LR guide patch is computed from the HR image "
                     "on demand (a few ms), nothing needs caching")
    schedule = EpochSchedule(len(images), batch // rank_size, rank_id, rank_size, seed,
                             bool(_get(dopt, "use_shuffle", True)))
    if _get(dopt, "use_grey", False):  # IRN-Color: (RGB patch, its grey), no LR
        from src.data.grey import GreyPatchMaker
        if lq_images is not None:
            raise IRNError("config: datasets.train.dataroot_LQ must be empty with use_grey")
        maker = GreyPatchMaker(_get(dopt, "GT_size", 144), _get(dopt, "use_flip", True),
                               _get(dopt, "use_rot", True))
    else:
        maker = PatchMaker(scale, _get(dopt, "GT_size", 144), _get(dopt, "use_flip", True),
                           _get(dopt, "use_rot", True))
    per_rank = batch // rank_size
    return TrainSource(images, schedule, maker, (total_iters - start_iter) * per_rank,
                       start_iter * per_rank, lq_images, bool(_get(dopt, "skip_bad_images", False)))


def create_train_dataset(opt, rank_id=0, rank_size=1, seed=None, start_iter=0, total_iters=None):
    """The batched ``mindspore.dataset.GeneratorDataset`` for training.

    Columns ``hr`` (B, 3, GT_size, GT_size) and ``lr_ref`` (B, 3, GT_size/s, GT_size/s; the
    grey target (B, 1, GT_size, GT_size) with ``use_grey``), float32, then ``fault``
    (B, FAULT_BYTES) uint8: the bad images of each sample (:meth:`TrainSource.item`,
    :mod:`src.data.faults`); the training loop checks and drops it.
    Per-rank batch ``batch_size // rank_size`` with ``drop_remainder``.
    The source is already this rank's shard (see :class:`EpochSchedule`), so the
    dataset itself is not sharded again. Batch ``j`` is iteration ``start_iter + j``;
    iterate it once (one pass covers all remaining iterations). ``n_workers > 1``
    uses that many worker processes.

    Args:
        opt (dict): parsed training config (see :func:`build_train_source`).
        rank_id, rank_size (int): data-parallel rank and number of ranks.
        seed (int | None): defaults to ``opt['train']['manual_seed']`` (else 0).
        start_iter (int): first iteration (resume).
        total_iters (int | None): defaults to ``opt['train']['niter']``.

    Returns:
        mindspore.dataset.Dataset: the batched dataset; its ``irn_source`` attribute
        is the :class:`TrainSource` (epoch size etc.).
    """
    import mindspore.dataset as ds

    source = build_train_source(opt, rank_id, rank_size, seed, start_iter, total_iters)
    workers = max(1, int(_get(opt["datasets"]["train"], "n_workers", 1)))
    dataset = ds.GeneratorDataset(_Items(source), column_names=["hr", "lr_ref", "fault"],
                                  shuffle=False,
                                  num_parallel_workers=workers,
                                  python_multiprocessing=workers > 1)
    dataset = dataset.batch(source.schedule.batch_size, drop_remainder=True)
    dataset.irn_source = source
    return dataset
