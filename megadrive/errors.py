"""Typed errors for the client side.

Every error a user can see derives from :class:`MegaDriveError`; its docstring
is the default message and ``exit_code`` is what the CLI exits with. Each
front-end maps these types to its own vocabulary (HTTP status, errno, exit
code) in exactly one place.
"""

from __future__ import annotations


class MegaDriveError(Exception):
    """Something went wrong."""

    exit_code = 1
    loggable = False  # True where messages never carry a file name or path (they may go to a log file)

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "error").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])

    def log_text(self) -> str:
        """What a log line may say of this error: never a decrypted name or path (logs outlive sessions)."""
        if self.loggable:
            return self.message
        return f"{type(self).__name__}: {(self.__doc__ or 'error').strip()}"


class IntegrityError(MegaDriveError):
    """Integrity check failed: data was tampered with, corrupted, or rolled back."""

    exit_code = 3
    loggable = True  # raised with node ids, chunk indexes and record kinds, never names


class NotFound(MegaDriveError):
    """No such file or folder."""

    exit_code = 4


class AlreadyExists(MegaDriveError):
    """A file or folder with that name already exists."""

    exit_code = 5


class NotADirectory(MegaDriveError):
    """Not a folder."""

    exit_code = 6


class IsADirectory(MegaDriveError):
    """Is a folder."""

    exit_code = 6


class NotEmpty(MegaDriveError):
    """Folder is not empty."""

    exit_code = 7


class InvalidPath(MegaDriveError):
    """Invalid path or name."""

    exit_code = 2


class NameTooLong(InvalidPath):
    """A name over 255 bytes (ENAMETOOLONG)."""


class NoSuchAttribute(MegaDriveError):
    """No extended attribute of that name (ENODATA)."""

    exit_code = 4


class NoSpace(MegaDriveError):
    """A per-node limit other than the quota is full (ENOSPC), e.g. the room for extended attributes."""

    exit_code = 9
    loggable = True


class NotPermitted(MegaDriveError):
    """Operation not permitted (EPERM), e.g. a hard link to a folder."""

    exit_code = 11


class CrossDevice(MegaDriveError):
    """Not across trees: a hard link from one account's tree into another's (EXDEV)."""

    exit_code = 2


class TooManyLinks(MegaDriveError):
    """A file has as many hard links as it may (EMLINK)."""

    exit_code = 2


class Conflict(MegaDriveError):
    """The operation conflicts with the state of the drive."""

    exit_code = 8


class StaleVersion(Conflict):
    """The file was changed elsewhere; this version was not committed."""


class QuotaExceeded(MegaDriveError):
    """Storage quota exceeded."""

    exit_code = 9
    loggable = True  # "storage quota exceeded (used U of Q bytes)": figures, never names


class FileTooLarge(MegaDriveError):
    """File too large."""

    exit_code = 9
    loggable = True


class AuthError(MegaDriveError):
    """Authentication failed."""

    exit_code = 10


class NotLoggedIn(AuthError):
    """Not logged in: run `megadrive login` (or `megadrive signup`) first."""


class RateLimited(AuthError):
    """Too many attempts; try again later."""


class PermissionDenied(MegaDriveError):
    """Permission denied."""

    exit_code = 11


class TakenDown(MegaDriveError):
    """This content was removed after an abuse notice."""

    exit_code = 14


class ServerError(MegaDriveError):
    """The server failed to process the request."""

    exit_code = 12


class NetworkError(MegaDriveError):
    """Cannot reach the server."""

    exit_code = 13


class WeakKdf(IntegrityError):
    """The key-derivation parameters offered are weaker than this client accepts."""


class ConfigError(MegaDriveError):
    """Invalid configuration."""

    exit_code = 2


def log_text(e: BaseException) -> str:
    """What a log line may say of any failure: a MegaDriveError's name-free text, else only its type.

    Logs (``mount.log``, a gateway's output) outlive sessions and logouts, so
    they never carry a decrypted name or path (docs/THREAT_MODEL.md).
    """
    return e.log_text() if isinstance(e, MegaDriveError) else type(e).__name__
