"""Image sources: a folder or an LMDB behind one random-access interface.

A source has ``names`` (image names without extension), ``len()``,
``read(i)`` -> float32 HxWx3 RGB in [0, 1], ``read_uint8(i)`` -> the same as uint8
and ``describe(i)`` (for messages).
:func:`open_image_source` accepts a plain image folder, an LMDB folder, or a DIV2K
root (``/data/DIV2K`` -> ``DIV2K_train_HR`` for training, ``DIV2K_valid_HR`` for
validation, a ``.lmdb`` sibling of those also works).
"""

import os

from src.data.io import list_images, modcrop, read_image, read_image_uint8
from src.data.lmdb_io import LmdbImages, is_lmdb
from src.utils.errors import IRNError

__all__ = ["FolderImages", "resolve_dataroot", "open_image_source", "ValidationSource"]

_DIV2K_SUBDIRS = {"train": "DIV2K_train_HR", "val": "DIV2K_valid_HR"}


class FolderImages:
    """Random-access reader of the images of a folder (sorted by file name).

    Args:
        folder (str): image folder.
        recursive (bool): include sub-folders.

    Raises:
        IRNError: the folder does not exist or has no image.
    """

    def __init__(self, folder, recursive=False):
        self.path = os.fspath(folder)
        self.paths = list_images(self.path, recursive=recursive)
        self.names = [os.path.splitext(os.path.relpath(p, self.path))[0] for p in self.paths]

    def __len__(self):
        return len(self.paths)

    def describe(self, index):
        """The file path of image ``index``."""
        return self.paths[index]

    def read(self, index):
        """Image ``index`` as float32 HxWx3 RGB in [0, 1]."""
        return read_image(self.paths[index])

    def read_uint8(self, index):
        """Image ``index`` as HxWx3 RGB uint8."""
        return read_image_uint8(self.paths[index])


def resolve_dataroot(path, phase="train"):
    """Find the image folder / LMDB meant by ``path``.

    ``path`` may be an image folder, an LMDB folder, or a DIV2K root containing
    ``DIV2K_train_HR`` (phase 'train') / ``DIV2K_valid_HR`` (phase 'val'), as a
    folder or as ``<name>.lmdb``.

    Raises:
        IRNError: ``path`` is missing or holds neither images nor an LMDB.
    """
    if path is None or str(path).strip() == "":
        raise IRNError(f"no data path given for the {phase} set (dataroot_GT is empty)")
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise IRNError(f"{path}: data path not found")
    if not os.path.isdir(path):
        raise IRNError(f"{path}: data path is a file, expected an image folder or an LMDB")
    if is_lmdb(path):
        return path
    sub = _DIV2K_SUBDIRS.get(phase)
    if sub is not None:
        for candidate in (os.path.join(path, sub), os.path.join(path, sub + ".lmdb")):
            if os.path.isdir(candidate):
                return candidate
    return path


def open_image_source(path, phase="train", recursive=False):
    """A :class:`FolderImages` or :class:`LmdbImages` for ``path``.

    See :func:`resolve_dataroot` for what ``path`` may be.
    """
    root = resolve_dataroot(path, phase)
    if is_lmdb(root):
        return LmdbImages(root)
    if root.endswith(".lmdb"):
        raise IRNError(f"{root}: not an LMDB folder (no data.mdb)")
    return FolderImages(root, recursive=recursive)


class ValidationSource:
    """Validation images, loaded lazily: ``source[i] -> (name, hr)``.

    ``hr`` is float32 HxWx3 RGB in [0, 1], mod-cropped to a multiple of ``scale``
    (bottom/right remainder dropped), as the paper evaluates.

    Args:
        path (str): image folder, LMDB, or DIV2K root (uses ``DIV2K_valid_HR``).
        scale (int): the rescaling factor.
        max_images (int | None): keep only the first ``max_images`` images.
    """

    def __init__(self, path, scale, max_images=None):
        self.images = open_image_source(path, phase="val")
        self.scale = int(scale)
        self.count = len(self.images) if max_images is None else min(int(max_images),
                                                                       len(self.images))

    @property
    def names(self):
        """Image names (without extension)."""
        return self.images.names[:self.count]

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not -self.count <= index < self.count:
            raise IndexError(index)
        index %= self.count
        hr = modcrop(self.images.read(index), self.scale, self.images.describe(index))
        return self.images.names[index], hr

    def __iter__(self):
        for i in range(self.count):
            yield self[i]
