"""The ``fault`` column of the training dataset: bad images reported out of the data workers.

An exception raised inside a ``mindspore.dataset`` worker reaches the training loop as a long
RuntimeError with the real message buried in it. So the source never raises for a bad image:
each sample carries a fixed-size uint8 row, a status byte (none / images skipped / failed)
and a utf-8 message, and the loop decodes it in the main process (log, count, or one-line
:class:`~src.utils.errors.IRNError`).
"""
import numpy as np

__all__ = ["FAULT_BYTES", "FAULT_NONE", "FAULT_SKIPPED", "FAULT_FAILED", "encode_fault",
           "decode_faults"]

FAULT_BYTES = 1024        # the ``fault`` column: status byte + utf-8 message, zero-padded
FAULT_NONE, FAULT_SKIPPED, FAULT_FAILED = 0, 1, 2


def encode_fault(status, message=""):
    """One row of the ``fault`` column: ``status`` and ``message`` as a fixed-size uint8 array."""
    row = np.zeros(FAULT_BYTES, np.uint8)
    row[0] = status
    data = message.encode("utf-8")
    if len(data) > FAULT_BYTES - 1:
        data = data[:FAULT_BYTES - 4] + b"..."
    row[1:1 + len(data)] = np.frombuffer(data, np.uint8)
    return row


def decode_faults(column):
    """``[(row, status, message)]`` of the rows of a batched ``fault`` column that report one."""
    out = []
    for i, row in enumerate(np.asarray(column).reshape(-1, FAULT_BYTES)):
        if row[0] != FAULT_NONE:
            text = row[1:].tobytes().rstrip(b"\0").decode("utf-8", errors="replace")
            out.append((i, int(row[0]), text))
    return out
