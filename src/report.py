"""Evaluation reports: terminal tables, JSON and CSV (the output side of val.py).

Tables take the model's columns, ``[(metric key, heading, decimals), ...]``.
"""
import csv
import io
import json
import math

from src.utils.atomic import write_text

__all__ = ['IRN_COLUMNS', 'protocol_text', 'image_table', 'set_table', 'write_json', 'write_csv']

IRN_COLUMNS = [('psnr_y', 'PSNR-Y', 2), ('ssim_y', 'SSIM-Y', 4), ('psnr_rgb', 'PSNR', 2),
           ('ssim_rgb', 'SSIM', 4), ('lr_psnr_y', 'LR PSNR-Y', 2), ('lr_ssim_y', 'LR SSIM-Y', 4),
           ('lr_psnr_rgb', 'LR PSNR', 2), ('lr_ssim_rgb', 'LR SSIM', 4)]


def protocol_text(protocol):
    """IRN's protocol in one line: how the numbers were made (z protocol, crop, reference LR)."""
    if protocol['z_mode'] == 'zero':
        z = 'z = 0'
    else:
        z = (f"z ~ N(0, I), metrics averaged over {protocol['z_draws']} draw(s), "
             f"seed {protocol['seed']}")
    return (f"x{protocol['scale']} | {z} | HR: uint8, crop {protocol['crop']} px, "
            f"Y = MATLAB rgb2ycbcr | LR: IRN LR vs rounded MATLAB-bicubic LR, no crop")


def _fmt(value, digits):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if math.isinf(value):
        return 'inf'
    return f'{value:.{digits}f}'


def _table(rows, first, columns):
    """Rows of (label, metrics dict) as aligned text with the metric columns."""
    heads = [first] + [c[1] for c in columns]
    body = [[label] + [_fmt(m.get(k), d) for k, _, d in columns] for label, m in rows]
    widths = [max(len(r[i]) for r in [heads] + body) for i in range(len(heads))]
    lines = ['  '.join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i])
                       for i, h in enumerate(heads))]
    lines.append('  '.join('-' * w for w in widths))
    for r in body:
        lines.append('  '.join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i])
                               for i, v in enumerate(r)))
    return '\n'.join(lines)


def image_table(set_name, results, columns):
    """Per-image table of one set."""
    return _table([(r['name'], r) for r in results], f'{set_name} image', columns)


def set_table(sets, columns):
    """Per-set table of the means: ``sets`` maps set name -> {'mean': ..., 'images': [...]}."""
    return _table([(f"{name} ({len(s['images'])})", s['mean']) for name, s in sets.items()],
                  'set (images)', columns)


def _clean(value):
    """JSON has no inf / nan: write them as strings (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(path, report):
    """Write the whole report (protocol, checkpoint, per-set means and per-image values)."""
    write_text(path, json.dumps(_clean(report), indent=1, allow_nan=False), 'report')


def write_csv(path, report, metrics):
    """One row per image and one 'MEAN' row per set, with the protocol in every row."""
    proto = {k: v for k, v in report['protocol'].items() if isinstance(v, (str, int, float))}
    text = io.StringIO()
    out = csv.writer(text)
    out.writerow(['set', 'image', *metrics, *proto])
    tail = list(proto.values())
    for name, s in report['sets'].items():
        for r in s['images']:
            out.writerow([name, r['name'], *[r.get(k) for k in metrics], *tail])
        out.writerow([name, 'MEAN', *[s['mean'].get(k) for k in metrics], *tail])
    write_text(path, text.getvalue(), 'report')
