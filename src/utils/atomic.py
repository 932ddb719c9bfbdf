"""Atomic file writes: a file appears under its final name complete, or not at all.

Every output of the project (checkpoints, training states, PNGs, reports, configs) is written
to a hidden temporary file in the destination folder (``.tmp_<random><ext>``), flushed to disk
and renamed onto the final name. A process killed at any point (even by SIGKILL) therefore
leaves either the previous file or the new one under that name, never half of one; what it
may leave is a temporary file, which no reader takes for an output and
:func:`remove_temp_files` deletes. A full disk or any other write error becomes an
:class:`~src.utils.errors.WriteError` (an ``IRNError``) naming the file, with the temporary file removed.
"""
import glob
import os
import tempfile

from src.utils.errors import WriteError

__all__ = ['TEMP_PREFIX', 'atomic_write', 'write_bytes', 'write_text', 'remove_temp_files']

TEMP_PREFIX = '.tmp_'


def _fsync(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (getattr(os, 'O_DIRECTORY', 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot sync a directory; the data is synced
            raise
    finally:
        os.close(fd)


def atomic_write(write, path, what='file'):
    """Call ``write(tmp_path)``, sync the file and rename it onto ``path``.

    Args:
        write: writes the whole content to the path it is given (it may itself write other
            names starting with that temporary name's stem, e.g. MindSpore's ``<stem>.tmp``:
            they are removed too).
        path (str): the final name (its folder is created).
        what (str): what the file is, for the error message.

    Raises:
        WriteError (an IRNError): the folder cannot be created or the write fails (e.g. the disk is full);
        nothing new is left under ``path`` and no temporary file remains.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
        os.close(fd)
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        tmp = None
        _fsync(folder, directory=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteError(f'{path}: could not write the {what} ({reason}); nothing was written '
                         f'under this name') from None
    finally:
        if tmp is not None:
            for leftover in glob.glob(glob.escape(os.path.splitext(tmp)[0]) + '*'):
                try:
                    os.remove(leftover)
                except OSError:
                    pass


def write_bytes(path, data, what='file'):
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    atomic_write(write, path, what)


def write_text(path, text, what='file'):
    """Write ``text`` (utf-8) to ``path`` atomically."""
    write_bytes(path, text.encode('utf-8'), what)


def remove_temp_files(folder):
    """Delete the temporary files an interrupted write left in ``folder``; returns their paths.

    Call it only where no other process is writing (e.g. a run's own output folder at start).
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TEMP_PREFIX) and os.path.isfile(path):
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed
