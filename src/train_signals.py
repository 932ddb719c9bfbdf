"""Stop requests during training: signal handlers and validations that end early.

train.py's handlers (SIGINT / SIGTERM) only set ``trainer.stop_requested``; the loop saves a
resumable state after the current step and ends. A validation in progress ends at its next image
(:class:`Stoppable`), so a stop never waits for a whole validation set (a scheduler's grace
period is often a few seconds). A second signal has the default effect (stop at once).
"""
import signal

__all__ = ['StopRequested', 'Stoppable', 'stop_on_signals']


class StopRequested(Exception):
    """Raised inside a validation when a stop was requested."""


class Stoppable:
    """A validation source whose iteration raises :class:`StopRequested` once ``owner`` has been
    asked to stop (``owner.stop_requested``); everything else is the source's."""

    def __init__(self, source, owner):
        self.source, self.owner = source, owner

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return self.source[index]

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __iter__(self):
        for item in self.source:
            if self.owner.stop_requested:
                raise StopRequested()
            yield item


def stop_on_signals(owner, signals=(signal.SIGINT, signal.SIGTERM)):
    """Install handlers setting ``owner.stop_requested`` on the first of ``signals`` (the next
    one has its default effect); returns the previous handlers ``{signum: handler}``."""
    def request_stop(signum, _frame):
        owner.stop_requested = True
        signal.signal(signum, signal.SIG_DFL)

    return {signum: signal.signal(signum, request_stop) for signum in signals}
