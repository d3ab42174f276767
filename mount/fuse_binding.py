"""The FUSE binding: which library, which libfuse, and the few things mfusepy leaves to us.

Imported lazily (loading it loads libfuse). Also the helpers for a mount
left by a crashed process.
"""

from __future__ import annotations

import ctypes.util
import errno
import functools
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from megadrive.errors import MegaDriveError

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


@functools.cache
def load() -> Any:
    """Import the binding lazily (it loads libfuse on import), once: looking libfuse up runs ``ldconfig``,
    and every error a FUSE call answers (each ENOENT of a lookup) asks for the binding's FuseOSError.

    mfusepy is the binding, over libfuse3 when it is installed, else libfuse2
    (docs/FUSE.md has the measurements); MEGADRIVE_LIBFUSE=2|3 forces one,
    MEGADRIVE_FUSE_BINDING=fusepy picks the unmaintained fusepy (kept only so
    the comparison can be re-run).
    """
    choice = os.environ.get("MEGADRIVE_LIBFUSE", "")
    if not choice and os.environ.get("MEGADRIVE_FUSE_BINDING") != "fusepy" and ctypes.util.find_library("fuse3"):
        choice = "3"  # measured faster for large files (1 MiB writes instead of 128 KiB; docs/FUSE.md)
    if choice and "FUSE_LIBRARY_PATH" not in os.environ:
        os.environ["FUSE_LIBRARY_PATH"] = {"2": "libfuse.so.2", "3": "libfuse3.so.3"}.get(choice, choice)
    try:
        if os.environ.get("MEGADRIVE_FUSE_BINDING") == "fusepy":
            import fuse as fusepy

            fusepy.fuse_version_major = 2
            return fusepy
        import mfusepy
    except (OSError, EnvironmentError) as e:  # noqa: UP024 - the bindings raise EnvironmentError
        raise MegaDriveError(f"FUSE is not available ({e}); install fuse and libfuse2 (or libfuse3-3)") from None
    return mfusepy


@functools.cache
def _libfuse3() -> Any:
    """libfuse3, as loaded by the binding (dlopen of the same name returns the same library), if it is the one
    in use: its fuse_invalidate_path is what mfusepy leaves out."""
    name = os.environ.get("FUSE_LIBRARY_PATH", "")
    if "fuse3" not in name:
        return None
    lib = ctypes.CDLL(name)
    if not hasattr(lib, "fuse_invalidate_path"):
        return None
    lib.fuse_get_context.restype = ctypes.POINTER(ctypes.c_void_p)  # struct fuse_context begins with `fuse *`
    lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.fuse_invalidate_path.restype = ctypes.c_int
    return lib


def invalidate_paths(paths: list[str]) -> None:
    """Drop the kernel's cached attributes and pages of these paths (other names of a hard-linked file that
    just changed). Call from a FUSE request. With libfuse2 nothing is done: its caches expire after
    attr_timeout."""
    lib = _libfuse3()
    if lib is None:
        return
    fuse = lib.fuse_get_context().contents
    for p in paths:
        lib.fuse_invalidate_path(fuse, p.encode("utf-8", "surrogateescape"))


def fuse_class(fuse: Any) -> Any:
    """mfusepy's FUSE with UTIME_NOW/UTIME_OMIT decoded and the libfuse3 extras passed on."""
    if not hasattr(fuse.FUSE, "utimens_fuse_2"):  # fusepy: as it comes (it decodes OMIT as a time)
        return fuse.FUSE

    class MegaFUSE(fuse.FUSE):  # type: ignore[misc, name-defined]
        def _times(self, buf: Any) -> tuple[int | None, int | None] | None:
            if not buf:
                return None
            out: list[int | None] = []
            for ts in (buf.contents.actime, buf.contents.modtime):
                if ts.tv_nsec == UTIME_OMIT:
                    out.append(None)
                elif ts.tv_nsec == UTIME_NOW:
                    out.append(time.time_ns())
                else:
                    out.append(ts.tv_sec * 10**9 + ts.tv_nsec)
            return out[0], out[1]

        def utimens_fuse_2(self, path: bytes | None, buf: Any) -> int:
            self.operations.utimens(None if path is None else path.decode(self.encoding, self.errors),
                                    self._times(buf))
            return 0

        def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
            fh = fip.contents.fh if fip else None
            self.operations.utimens(None if path is None else path.decode(self.encoding, self.errors),
                                    self._times(buf), fh)
            return 0

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            self.operations.rename(old.decode(self.encoding, self.errors), new.decode(self.encoding, self.errors),
                                   flags)
            return 0

    return MegaFUSE


def is_stale(mountpoint: Path) -> bool:
    """A mount left by a crashed process answers 'Transport endpoint is not connected'.

    statvfs, not stat: the kernel may answer stat from its attribute cache for
    a second after the crash; statfs always goes to the (dead) filesystem.
    """
    try:
        os.statvfs(mountpoint)
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def lazy_unmount(mountpoint: Path) -> None:
    for cmd in (["fusermount", "-uz", str(mountpoint)], ["fusermount3", "-uz", str(mountpoint)],
                ["umount", "-l", str(mountpoint)]):
        try:
            if subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            continue
