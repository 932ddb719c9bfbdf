"""Training logs: plain lines in a file, a progress bar on a terminal, csv curves."""
import csv
import io
import logging
import os
import sys

from tqdm import tqdm

from src.utils.atomic import write_text

__all__ = ['setup_train_logger', 'ProgressBar', 'CsvLog', 'format_seconds', 'FILE_ONLY']

_FORMAT = '%(asctime)s %(levelname)s %(message)s'
FILE_ONLY = {'file_only': True}  # ``extra=`` of a record for train.log only (not the console)


class _TqdmHandler(logging.Handler):
    """Console handler that prints above an active tqdm bar instead of breaking it."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_train_logger(out_dir, is_main=True, name='irn'):
    """The 'irn' logger: console (via tqdm) and ``out_dir/train.log`` on the main rank.

    Other ranks only print warnings and errors, tagged with nothing else, so that one
    data-parallel job writes one log.

    Returns:
        (logging.Logger, str | None): the logger and the log file path (None off rank 0).
    """
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter(_FORMAT))
    console.addFilter(lambda record: not getattr(record, 'file_only', False))
    logger.addHandler(console)
    log_path = None
    if is_main:
        os.makedirs(out_dir, exist_ok=True)
        log_path = os.path.join(out_dir, 'train.log')
        file_handler = logging.FileHandler(log_path, encoding='utf-8')
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(file_handler)
    return logger, log_path


class ProgressBar:
    """A tqdm bar over iterations, shown only when stderr is a terminal on the main rank."""

    def __init__(self, total, initial, enabled=True):
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, unit='it', dynamic_ncols=True,
                            file=sys.stderr)

    def update(self, losses=None):
        """Advance by one iteration, showing ``losses`` (dict) as the postfix."""
        if self.bar is not None:
            if losses:
                self.bar.set_postfix({k: f'{v:.4g}' for k, v in losses.items()}, refresh=False)
            self.bar.update(1)

    def close(self):
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CsvLog:
    """Append-only csv of per-iteration values (the training curves), resume-aware.

    Args:
        path (str): csv file.
        fields (list[str]): columns; the first must be 'iter'.
        start_iter (int): rows with ``iter > start_iter`` (left by a run that went further
            than the checkpoint it is resumed from) are dropped so the curve stays consistent.
    """

    def __init__(self, path, fields, start_iter=0):
        self.path, self.fields = path, list(fields)
        rows = []
        if start_iter > 0 and os.path.isfile(path):
            rows = [r for r in _complete_rows(path) if int(r['iter']) <= start_iter]
        text = io.StringIO()
        writer = csv.DictWriter(text, self.fields)
        writer.writeheader()
        writer.writerows({k: r.get(k, '') for k in self.fields} for r in rows)
        write_text(path, text.getvalue(), 'training log')

    def append(self, row):
        """Write one row (a dict with the declared fields)."""
        with open(self.path, 'a', newline='', encoding='utf-8') as f:
            csv.DictWriter(f, self.fields).writerow({k: row.get(k, '') for k in self.fields})


def _complete_rows(path):
    """The rows of a csv log that a kill did not cut: a last line without its newline and
    rows with missing or unreadable fields are dropped."""
    with open(path, newline='', encoding='utf-8') as f:
        text = f.read()
    if not text.endswith('\n'):
        text = text[:text.rfind('\n') + 1]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            int(row['iter'])
        except (TypeError, ValueError, KeyError):
            continue
        if None not in row and None not in row.values():
            rows.append(row)
    return rows


def read_csv(path):
    """Rows of a :class:`CsvLog` file as dicts of floats (for plotting)."""
    with open(path, newline='', encoding='utf-8') as f:
        return [{k: float(v) for k, v in r.items() if v not in ('', None)} for r in csv.DictReader(f)]


def format_seconds(seconds):
    """12345 -> '3:25:45' ('?' when unknown)."""
    if seconds != seconds:  # nan
        return '?'
    seconds = int(max(0, seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'
