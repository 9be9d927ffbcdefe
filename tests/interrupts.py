"""Stopping a search at a chosen epoch, as Ctrl-C would, for the tests of what a resume continues."""

from flatarch.reference_spaces.engine import loop


def interrupt_at(monkeypatch, epoch_to_fail: int) -> None:
    """Every search from now on (until ``monkeypatch`` undoes it) raises ``KeyboardInterrupt`` when
    epoch ``epoch_to_fail`` (0-based) starts."""
    real = loop._Searcher.run_epoch

    def run_epoch(self, epoch):
        if epoch == epoch_to_fail:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(loop._Searcher, "run_epoch", run_epoch)
