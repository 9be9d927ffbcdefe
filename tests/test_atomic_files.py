"""Atomic writes: all or nothing, ordinary permissions, no temporary files left behind."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from flatarch.atomic_files import atomic_save_figure, atomic_write, atomic_write_text  # noqa: E402


def test_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_text(path, "old")

    def crash(f):
        f.write("half of the new")
        raise KeyboardInterrupt  # even a BaseException must not leave a torn file

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


def test_permissions_follow_umask_or_the_existing_file(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.bin", lambda f: f.write(b"x"), binary=True)
        assert os.stat(tmp_path / "new.bin").st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("a")
        os.chmod(kept, 0o600)
        atomic_write_text(kept, "b")
        assert os.stat(kept).st_mode & 0o777 == 0o600 and kept.read_text() == "b"
    finally:
        os.umask(old)


def test_text_mode_keeps_newlines_as_given_and_creates_folders(tmp_path):
    path = tmp_path / "deep" / "table.csv"
    atomic_write_text(path, "a,b\r\n1,2\n")
    assert path.read_bytes() == b"a,b\r\n1,2\n"


def test_figure_format_from_extension(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    atomic_save_figure(fig, tmp_path / "plot.png", dpi=40)
    atomic_save_figure(fig, tmp_path / "plot.svg")
    plt.close(fig)
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "plot.svg").read_bytes()[:500]
    assert sorted(os.listdir(tmp_path)) == ["plot.png", "plot.svg"]


class _Preempted(Exception):
    """What a signal handler raises (KeyboardInterrupt, SIGTERM's Terminated, submitit's exit)."""


def test_a_signal_during_torch_save_is_handled_after_the_write_as_itself(tmp_path):
    """A handler's exception raised inside torch.save's C++ writer would come out as a RuntimeError
    ("unexpected pos") with the old file kept; deferred, the new file is in place and the handler's
    own exception follows."""
    import signal

    import torch

    path = tmp_path / "checkpoint.pt"
    atomic_write_text(path, "old")
    state = {f"t{i}": torch.full((64,), float(i)) for i in range(64)}

    def handler(signum, frame):
        raise _Preempted(signum)

    class SignalMidWrite:
        """The file torch.save writes through; the signal arrives on its third write."""

        def __init__(self, f):
            self.f, self.calls = f, 0

        def write(self, data):
            self.calls += 1
            if self.calls == 3:
                signal.raise_signal(signal.SIGUSR1)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(_Preempted):
            atomic_write(path, lambda f: torch.save(state, SignalMidWrite(f)), binary=True)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert signal.getsignal(signal.SIGUSR1) is previous
    loaded = torch.load(path, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
