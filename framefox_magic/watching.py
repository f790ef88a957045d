"""Knowing that revision folders did not change without looking at each file: Linux's inotify, the
kernel's exact change notification, on local filesystems only. Wherever it would not be exact, or
anything fails, `watch` gives None and the caller scans the files as before."""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .headers import is_revision_file

# statfs f_type of filesystems whose every change goes through this kernel. Not overlayfs (changes
# to its layers made outside the mount are not reported), nor NFS, CIFS/SMB, FUSE, 9p and the like
# (changes made on another machine or by the host are not).
LOCAL_FILESYSTEMS = frozenset({
    0xEF53,  # ext2/3/4
    0x58465342,  # xfs
    0x9123683E,  # btrfs
    0x01021994,  # tmpfs
    0x858458F6,  # ramfs
    0xF2F52010,  # f2fs
    0x2FC12FC1,  # zfs
    0xCA451A4E,  # bcachefs
    0x3153464A,  # jfs
    0x52654973,  # reiserfs
})

_EVENTS = (0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800)  # modify, attrib,
# close_write, moved from/to, create, delete, delete_self, move_self; the kernel adds unmount,
# queue overflow and watch removed (ignored) by itself.
_ONLYDIR = 0x01000000
_IS_FOLDER = 0x40000000
_QUEUE_OVERFLOW = 0x4000
_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
_libc: Any = None


class FolderWatch:
    """One inotify instance on the revision folders; `unchanged()` holds while nothing in them changed."""

    def __init__(self, fd: int, roots: list[tuple[str, tuple[int, int]]]) -> None:
        self._fd, self._pid = fd, os.getpid()
        self._roots = roots  # each folder as its path and the (device, inode) it named when watched
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        self._pending = b""
        self._close = weakref.finalize(self, os.close, fd)

    def unchanged(self) -> bool:
        """True when no event arrived and each folder's path still names the folder watched."""
        if os.getpid() != self._pid:  # a forked child: the queue is the parent's to read
            return False
        if not self._pending:
            data = self._read_available()
            if any(self._matters(wd, mask, name) for wd, mask, name in _events(data)):
                self._pending = data  # kept whole for changed()
        if self._pending:
            return False
        return all(_identity(path) == identity for path, identity in self._roots)

    def _matters(self, wd: int, mask: int, name: bytes) -> bool:
        """Whether an event can change what a scan lists: a revision file, a subfolder, a folder
        itself, a lost event. Python writing bytecode (`__pycache__`) or any other file does not."""
        if wd < 0 or wd not in self._folders or not name or mask & _QUEUE_OVERFLOW:
            return True
        if mask & _IS_FOLDER:
            return name != b"__pycache__"
        return is_revision_file(os.fsdecode(name))

    def _read_available(self) -> bytes:
        data = b""
        with contextlib.suppress(BlockingIOError):  # nothing more to read
            while chunk := os.read(self._fd, 65536):
                data += chunk
        return data

    def changed(self) -> list[str] | None:
        """The paths events named since the watch began (None: the kernel's queue overflowed, or
        this is a forked child, which leaves the queue to its parent)."""
        if os.getpid() != self._pid:
            return None
        paths = []
        for wd, _mask, name in _events(self._drain()):
            if wd < 0 or wd not in self._folders:  # wd -1: the queue overflowed
                return None
            folder = self._folders[wd]
            paths.append(os.path.join(folder, os.fsdecode(name)) if name else folder)
        return paths

    def folders(self) -> list[str]:
        """The folders watched, as given."""
        return [path for path, _identity in self._roots]

    def close(self) -> None:
        """Close the inotify descriptor (done too when the watch is collected)."""
        self._close()

    def _drain(self) -> bytes:
        data, self._pending = self._pending, b""
        with contextlib.suppress(OSError):
            data += self._read_available()
        return data

    def _add(self, folder: str) -> None:
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(folder), _EVENTS | _ONLYDIR)
        if wd < 0:
            raise OSError(_ctypes().get_errno(), "inotify_add_watch")
        self._folders[wd] = folder


def _events(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(watch descriptor, mask, name) of each event in what the descriptor gave."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        yield wd, mask, data[offset + _HEADER.size: offset + _HEADER.size + length].rstrip(b"\0")
        offset += _HEADER.size + length


def watch(folders: list[Path], recursive: bool) -> FolderWatch | None:
    """A watch set up on `folders` (and their subfolders when `recursive`), before the caller scans
    them; None where notification would not be exact or is not available (then scan each time)."""
    if not sys.platform.startswith("linux") or not folders:
        return None
    try:
        if not _load_libc():
            return None
        fd = _libc.inotify_init1(_NONBLOCK_CLOEXEC)
        if fd < 0:  # EMFILE: the per-user instance limit, or out of descriptors
            return None
    except (OSError, AttributeError):
        return None
    result = FolderWatch(fd, [(str(folder), _identity(str(folder))) for folder in folders])
    try:
        if all(_watch_tree(result, str(folder), recursive) for folder in folders):
            return result
    except (OSError, ValueError):  # a folder missing or unreadable, the watch limit reached, ...
        pass
    result.close()
    return None


def _watch_tree(result: FolderWatch, folder: str, recursive: bool) -> bool:
    """Watch `folder`, then list it: a change after the watch is an event, one before it is listed.
    False where a change could escape the watch: another filesystem, a symbolic link (its target's
    changes are not reported here), a file with several names (a write through another name)."""
    if filesystem_type(folder) not in LOCAL_FILESYSTEMS:
        return False
    result._add(folder)
    with os.scandir(folder) as entries:
        for entry in entries:
            folder_entry = recursive and entry.name != "__pycache__" and entry.is_dir()
            if not folder_entry and not is_revision_file(entry.name):
                continue
            if entry.is_symlink():
                return False
            if folder_entry:
                if not _watch_tree(result, entry.path, True):
                    return False
            elif entry.stat(follow_symlinks=False).st_nlink > 1:
                return False
    return True


def filesystem_type(path: str) -> int | None:
    """statfs's f_type of the filesystem holding `path` (None when it cannot be read)."""
    if not _load_libc():
        return None
    buffer = _ctypes().create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buffer) != 0:
        return None
    return _ctypes().c_long.from_buffer(buffer).value & 0xFFFFFFFF  # f_type comes first


def _identity(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


def _ctypes() -> Any:
    import ctypes

    return ctypes


def _load_libc() -> bool:
    """The C library's inotify and statfs, through ctypes (imported only here, on Linux)."""
    global _libc
    if _libc is None:
        ctypes = _ctypes()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.inotify_init1.argtypes = [ctypes.c_int]
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        except (OSError, AttributeError):
            _libc = False
            return False
        _libc = libc
    return bool(_libc)
