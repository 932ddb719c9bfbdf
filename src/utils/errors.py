"""The one exception type that entry points turn into a one-line message."""


class IRNError(Exception):
    """A user-facing problem with an input (path, image, checkpoint, config).

    The message names the file or key and the problem; entry points print it as
    ``error: <message>`` and exit with status 2 instead of showing a traceback.
    """


class WriteError(IRNError):
    """An output file could not be written (a full disk, no permission): the later outputs of
    the same run would fail too, so tools stop at the first one."""


_SECTION_RULE = '-' * 20  # MindSpore frames each section title with a line of dashes


def describe_error(exc):
    """A device or framework exception as a short message that keeps what explains it.

    MindSpore puts a summary on the first line and the cause in titled sections below it. On
    Ascend the error code, reason and solution are in the ``Ascend Error Message`` section
    (the first line often just says "The details refer to 'Ascend Error Message'"), so that
    section is kept, indented; the ``C++ Call Stack`` and any other section are dropped.
    """
    lines = [line.rstrip() for line in str(exc).strip().splitlines()]
    first = next((line.strip() for line in lines if line.strip()), type(exc).__name__)
    kept, keep = [], False
    for i, line in enumerate(lines):
        text = line.strip()
        titled = text.startswith('- ') and i > 0 and lines[i - 1].strip().startswith(_SECTION_RULE)
        if titled:  # e.g. '- Ascend Error Message:', '- C++ Call Stack: (For framework developers)'
            keep = text[2:].split(':')[0].strip() == 'Ascend Error Message'
            continue
        if keep and not text.startswith(_SECTION_RULE):
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    while kept and not kept[0].strip():
        kept.pop(0)
    if not kept:
        return first
    return first + '\n  Ascend Error Message:\n' + '\n'.join('    ' + line.strip() for line in kept)
