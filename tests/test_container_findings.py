"""Findings of a walkthrough of containers and file systems (read-only mounts, /dev/shm: see
test_shared_memory_full.py for the latter)."""
import os
from types import SimpleNamespace

import pytest

from pix2pixhd.errors import ConfigError
from pix2pixhd.paths import _check_writable_parent


@pytest.mark.parametrize("flags, why", [(os.ST_RDONLY, "it is on a read-only file system"), (0, "no write permission")])
def test_an_unwritable_output_folder_names_a_read_only_mount_as_such(tmp_path, monkeypatch, flags, why):
    """--out in a read-only bind mount said "no write permission", which sends the user to chmod."""
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_flag=flags))
    with pytest.raises(ConfigError, match=rf"^cannot write {tmp_path / 'o'}: {tmp_path} is not writable \({why}\); "
                                          r"give --out a path in a folder you can write to$"):
        _check_writable_parent(tmp_path / "o", "--out")


def test_a_statvfs_that_fails_leaves_the_permission_wording(tmp_path, monkeypatch):
    def failing(p):
        raise OSError(13, "Permission denied")
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    monkeypatch.setattr(os, "statvfs", failing)
    with pytest.raises(ConfigError, match=r"is not writable \(no write permission\)"):
        _check_writable_parent(tmp_path / "o", "--out")
