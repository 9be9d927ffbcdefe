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
