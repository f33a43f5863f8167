"""A run's train.lock or a synthesis's synthesis.lock that is a link, a fifo or a folder: refused
in one line naming it, and nothing is written through it. The lock's record is written over the
file the lock opens, so a link planted in a shared --checkpoints_dir or --out made the next run
wipe the file it pointed to (a hostile-input walkthrough: victim.txt then held the lock's pid)."""
import os
import re

import pytest

from pix2pixhd.engine import OutLock
from pix2pixhd.errors import InputError
from pix2pixhd.run_folder import RUN_LOCK, lock_run


def _take(kind: str, folder):
    return lock_run(folder) if kind == "train" else OutLock(folder).acquire()


@pytest.mark.fault(cls="path tricks", case="{kind}'s lock file is a symbolic link to another file: refused, "
                                            "the file it points to untouched")
@pytest.mark.parametrize("kind", ["train", "synthesis"])
def test_a_lock_that_is_a_link_is_refused_and_its_target_untouched(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / (RUN_LOCK if kind == "train" else "synthesis.lock")
    lock.symlink_to(victim)
    with pytest.raises(InputError, match=rf"^{lock} is a symbolic link \(never followed: .*\); the lock is a "
                                         rf"plain file that this program writes: remove {lock} and rerun$"):
        _take(kind, folder)
    assert victim.read_text() == "precious data" and lock.is_symlink()
    dangling = folder / "elsewhere.txt"   # a link to a file not there yet: not created through it either
    lock.unlink()
    lock.symlink_to(dangling)
    with pytest.raises(InputError, match="is a symbolic link"):
        _take(kind, folder)
    assert not dangling.exists()


@pytest.mark.fault(cls="path tricks", case="{kind}'s lock file is a fifo or a folder: refused in one line naming it")
@pytest.mark.parametrize("kind", ["train", "synthesis"])
@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_a_lock_that_is_a_fifo_or_a_folder_is_refused(tmp_path, kind, what):
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / (RUN_LOCK if kind == "train" else "synthesis.lock")
    os.mkfifo(lock) if what == "fifo" else lock.mkdir()
    said = "not a regular file (a fifo or a device)" if what == "fifo" else "a folder"
    with pytest.raises(InputError, match=rf"^{lock} is {re.escape(said)}; the lock is a plain file"):
        _take(kind, folder)


def test_without_o_nofollow_a_lock_that_is_a_link_is_still_refused(tmp_path, monkeypatch):
    """Where the platform has no O_NOFOLLOW (Windows), the open would follow the link: the link is
    refused before it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "synthesis.lock").symlink_to(victim)
    monkeypatch.delattr(os, "O_NOFOLLOW")
    with pytest.raises(InputError, match="is a symbolic link"):
        OutLock(folder).acquire()
    assert victim.read_text() == "precious data"
