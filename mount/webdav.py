"""WebDAV front-end: a wsgidav DAVProvider over the Drive API, and nothing else.

It only translates: WebDAV resources to Drive calls, and Drive errors to
DAVError statuses (in :func:`dav_error`, the one mapping). Uploads stream
into a staged Drive version that becomes visible only when the request body
completed (``end_write(with_errors=False)``). :class:`ErrorPages` turns every
failure into a one-line answer: a Drive error, a client too slow or a body
cut short, and (as a logged 500) anything else; never a traceback or a repr.
"""

from __future__ import annotations

import io
import logging
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, urlparse

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException
from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_INTERNAL_ERROR,
    HTTP_NO_CONTENT,
    HTTP_NOT_FOUND,
    HTTP_NOT_MODIFIED,
    HTTP_PRECONDITION_FAILED,
    DAVError,
    PRECONDITION_CODE_PropfindFiniteDepth,
    get_http_status_string,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider
from wsgidav.mw.base_mw import BaseMiddleware

from megadrive import errors
from megadrive.drive import Drive, Entry, FileReader, FileWriter, join

from .bounds import http_date
from .connection import ClientTooSlow, MalformedBody

log = logging.getLogger(__name__)

HTTP_REQUEST_TIMEOUT = 408
HTTP_CONTENT_TOO_LARGE = 413
HTTP_UNAVAILABLE_FOR_LEGAL_REASONS = 451
HTTP_INSUFFICIENT_STORAGE = 507
HTTP_BAD_GATEWAY = 502
# environ: path -> the Entry a listing in this request just read (a PROPFIND's dead properties come from it
# rather than from resolving every member's path again).
LISTED = "megadrive.listed"
# 4xx answers to a request the gateway will not carry out as sent: each gets a log line (never a name in it).
REFUSALS = frozenset({400, 405, 408, 411, 413, 414, 415, 416, 431, 501})


# The one table of Drive errors to statuses, first match wins (a StaleVersion is a Conflict: it comes first).
_STATUSES: tuple[tuple[type[errors.MegaDriveError] | tuple[type[errors.MegaDriveError], ...], int], ...] = (
    (errors.NotFound, HTTP_NOT_FOUND),
    (errors.StaleVersion, HTTP_PRECONDITION_FAILED),
    ((errors.AlreadyExists, errors.NotEmpty, errors.NotADirectory, errors.IsADirectory, errors.Conflict),
     HTTP_CONFLICT),
    (errors.InvalidPath, HTTP_BAD_REQUEST),
    ((errors.PermissionDenied, errors.NotPermitted), HTTP_FORBIDDEN),
    ((errors.TooManyLinks, errors.CrossDevice), HTTP_CONFLICT),
    (errors.NoSpace, HTTP_INSUFFICIENT_STORAGE),
    (errors.FileTooLarge, HTTP_CONTENT_TOO_LARGE),
    (errors.TakenDown, HTTP_UNAVAILABLE_FOR_LEGAL_REASONS),
    (errors.QuotaExceeded, HTTP_INSUFFICIENT_STORAGE),
    # The storage server is down or failed:
    ((errors.NetworkError, errors.AuthError, errors.ServerError), HTTP_BAD_GATEWAY),
)


def _status_for(e: errors.MegaDriveError) -> int:
    return next((status for kinds, status in _STATUSES if isinstance(e, kinds)), HTTP_INTERNAL_ERROR)


class LoggedError(DAVError):  # type: ignore[misc]
    """A status whose cause was logged where it was mapped (a Drive error, an internal error)."""


def dav_error(e: errors.MegaDriveError) -> LoggedError:
    """The one place Drive errors become WebDAV statuses; a 5xx is logged (by type, never with a name)."""
    status = _status_for(e)
    if isinstance(e, errors.IntegrityError):
        log.error("INTEGRITY FAILURE: %s", e.log_text())
    elif status >= 500:
        log.error("%s", e.log_text())
    # errors.InvalidPath quotes the name as Python would; the client gets the rule it broke instead.
    text = (errors.InvalidPath.__doc__ or "").strip() if isinstance(e, errors.InvalidPath) else e.message
    return LoggedError(status, context_info=text)


@contextmanager
def dav_errors() -> Iterator[None]:
    """Drive calls inside raise their errors as WebDAV statuses (:func:`dav_error`)."""
    try:
        yield
    except errors.MegaDriveError as e:
        raise dav_error(e) from None


def _drive(environ: dict[str, Any]) -> Drive:
    return environ["megadrive.drive"]  # type: ignore[no-any-return]


class _ReadStream:
    """File-like view of a FileReader for wsgidav (seek for Range, read in blocks)."""

    def __init__(self, reader: FileReader) -> None:
        self._r = reader

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 2:
            pos = self._r.size + pos
        elif whence == 1:
            pos = self._r.pos + pos
        self._r.seek(pos)
        return pos

    def tell(self) -> int:
        return self._r.pos

    def read(self, size: int = -1) -> bytes:
        with dav_errors():
            return self._r.read(size)

    def close(self) -> None:
        self._r.close()


class _WriteStream:
    """wsgidav closes this before end_write(); the commit happens in end_write."""

    def __init__(self, writer: FileWriter) -> None:
        self.writer = writer
        self.received = 0

    def write(self, data: bytes) -> int:
        with dav_errors():
            n = self.writer.write(data)
        self.received += n
        return n

    def close(self) -> None:
        pass


MAX_MTIME = 253402300799  # 9999-12-31T23:59:59Z


class _NodeResource:
    """What files and folders do alike: delete, MOVE and COPY as one Drive call each, mtime writes.
    (A mixin before wsgidav's DAVNonCollection / DAVCollection, which supply ``environ`` and the rest.)"""

    environ: dict[str, Any]
    path: str
    provider: Any

    def get_creation_date(self) -> float | None:
        return None

    def delete(self) -> None:
        with dav_errors():
            _drive(self.environ).delete(self.path)
        self.remove_all_properties(recursive=True)  # type: ignore[attr-defined]
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]

    def handle_move(self, dest_path: str) -> bool:
        """MOVE in one server transaction: the destination is trashed only as the source takes its place.

        wsgidav's generic MOVE deletes the destination first; this never does.
        Across accounts' trees (into a folder shared with us, or out of one) it
        is a copy under fresh keys, then the delete of the source.
        Properties travel with the node; locks do not (RFC 4918 7.5).
        """
        drive = _drive(self.environ)
        with dav_errors():
            try:
                drive.rename(self.path, dest_path, overwrite=True, replace_nonempty=True)
            except errors.CrossDevice:  # into or out of another account's tree: a copy, then the delete
                drive.copy(self.path, dest_path, overwrite=True, recursive=True)
                drive.delete(self.path)
        self._drop_locks(self.path)
        self._drop_locks(dest_path)
        return True

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """COPY built beside the destination, then swapped in atomically; no chunk is re-uploaded."""
        with dav_errors():
            _drive(self.environ).copy(self.path, dest_path, overwrite=True, recursive=depth_infinity)
        self._drop_locks(dest_path)
        return True

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        """getlastmodified (or X-OC-Mtime, or Win32LastModifiedTime) written: an HTTP date or seconds."""
        secs = time_stamp if isinstance(time_stamp, int | float) else http_date(str(time_stamp))
        if secs is None or not 0 <= secs <= MAX_MTIME:
            raise DAVError(HTTP_BAD_REQUEST, context_info="not a date the drive can store")
        if not dry_run:
            with dav_errors():
                _drive(self.environ).set_attrs(dest_path, mtime_ns=int(secs * 1_000_000_000))
        return True

    def _drop_locks(self, path: str) -> None:
        lm = self.provider.lock_manager
        if lm:
            lm.remove_all_locks_from_url(quote(self.provider.share_path + path.rstrip("/")), recursive=True)


class FileResource(_NodeResource, DAVNonCollection):  # type: ignore[misc]
    def __init__(self, path: str, environ: dict[str, Any], entry: Entry | None) -> None:
        super().__init__(path, environ)
        self.entry = entry  # None: a PUT target not committed yet
        self._writer: FileWriter | None = None
        self._stream: _WriteStream | None = None

    def get_content_length(self) -> int:
        return self.entry.size if self.entry else 0

    def get_content_type(self) -> str:
        return util.guess_mime_type(self.path) or mimetypes.guess_type(self.path)[0] or "application/octet-stream"

    def get_display_name(self) -> str:
        return self.entry.name if self.entry else util.get_uri_name(self.path)

    def get_etag(self) -> str | None:
        return self.entry.etag if self.entry else None

    def get_last_modified(self) -> float | None:
        return self.entry.mtime if self.entry else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_used_bytes(self) -> int | None:
        return None

    def get_available_bytes(self) -> int | None:
        return None

    def get_property_value(self, name: str) -> Any:
        if name == "{DAV:}getetag":  # RFC 4918 15.6: the entity tag, quoted as in the ETag header
            etag = self.get_etag()
            return f'"{etag}"' if etag else None
        return super().get_property_value(name)

    def get_content(self) -> _ReadStream:
        """Open and verify before the status line goes out, so a tampered file answers 5xx.

        wsgidav calls this after start_response but before the first body
        byte: an error raised here still becomes an error response. The first
        chunk the request needs is verified now; a later chunk that fails its
        check aborts the connection mid-body (the client sees a short body),
        never sends wrong bytes.
        """
        with dav_errors():
            reader = _drive(self.environ).open_read(self.path)
            start, end = 0, reader.size
            rng = self.environ.get("HTTP_RANGE")
            if rng and reader.size:
                try:
                    ranges, _ = util.obtain_content_ranges(rng, reader.size)
                    if len(ranges) == 1:
                        start, end = ranges[0][0], ranges[0][1] + 1
                except (ValueError, TypeError, IndexError, DAVError):
                    pass
            reader.end_hint = end
            reader.pread(start, 1)
            reader.seek(start)
            return _ReadStream(reader)

    def begin_write(self, *, content_type: str | None = None) -> _WriteStream:
        with dav_errors():
            self._writer = _drive(self.environ).open_write(self.path, journal=True)
        self._stream = _WriteStream(self._writer)
        return self._stream

    def end_write(self, *, with_errors: bool) -> None:
        """Save the staged version only if the whole body arrived; otherwise keep the old one."""
        w, self._writer = self._writer, None
        if w is None:
            return
        if with_errors:
            w.abort()
            return
        expected = self.environ.get("CONTENT_LENGTH")
        received = self._stream.received if self._stream else 0
        if expected and expected.isdigit() and int(expected) != received:
            w.abort()  # the client went away mid-body: cheroot reports that as a short, clean EOF
            log.warning("a PUT body ended after %d of %s bytes; nothing committed", received, expected)
            raise DAVError(HTTP_BAD_REQUEST, context_info="request body incomplete; nothing was stored")
        with dav_errors():  # write-back: durable here (sealed) now, on the server once the uploader has it
            try:
                w.save()
            finally:
                w.close()
            self.entry = _drive(self.environ).stat(self.path)



class FolderResource(_NodeResource, DAVCollection):  # type: ignore[misc]
    def __init__(self, path: str, environ: dict[str, Any], entry: Entry) -> None:
        super().__init__(path, environ)
        self.entry = entry
        self._allprop = False

    def get_display_name(self) -> str:
        return self.entry.name

    def get_last_modified(self) -> float:
        return self.entry.mtime

    def get_etag(self) -> str | None:
        return None

    def get_used_bytes(self) -> int | None:
        if self._allprop:
            return None
        with dav_errors():
            return _drive(self.environ).quota().used

    def get_available_bytes(self) -> int | None:
        if self._allprop:
            return None
        with dav_errors():
            return _drive(self.environ).quota().available

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        """RFC 4331: quota properties are not part of allprop (and would cost a server round trip)."""
        self._allprop = is_allprop
        try:
            return list(super().get_property_names(is_allprop=is_allprop))
        finally:
            self._allprop = False

    def get_member_names(self) -> list[str]:
        with dav_errors():
            return [e.name for e in _drive(self.environ).listdir(self.path)]

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def get_member_list(self) -> list[Any]:
        with dav_errors():
            entries = _drive(self.environ).listdir(self.path)
        out: list[Any] = []
        listed = self.environ.setdefault(LISTED, {})
        for e in entries:
            listed[join(self.path, e.name)] = e
            p = join(self.path, e.name) + ("/" if e.is_dir else "")
            out.append(FolderResource(p, self.environ, e) if e.is_dir else FileResource(p, self.environ, e))
        return out

    def create_empty_resource(self, name: str) -> FileResource:
        path = join(self.path, name)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            return FileResource(path, self.environ, None)  # created when the body completes
        with dav_errors():
            entry = _drive(self.environ).write_file(path, b"")
        return FileResource(path, self.environ, entry)

    def create_collection(self, name: str) -> None:
        with dav_errors():
            _drive(self.environ).mkdir(join(self.path, name))

    def support_recursive_delete(self) -> bool:
        return True



WIN32_NS = "{urn:schemas-microsoft-com:}"
MAX_PROPPATCH_PEEK = 64 * 1024
MAX_INFINITE_PROPFIND = 2_000  # entries a Depth: infinity PROPFIND may answer (webdav4 asks so for isdir)


class DriveProvider(DAVProvider):
    """Serves one Drive; every request finds it in ``environ['megadrive.drive']``."""

    def __init__(self, drive: Drive) -> None:
        super().__init__()
        self.drive = drive

    def custom_request_handler(self, environ: dict[str, Any], start_response: Any, default_handler: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        if method == "PROPFIND":
            self._finite_propfind(environ)
        if method == "PROPPATCH":
            self._admit_win32_proppatch(environ)
        if method in ("MOVE", "COPY") and "HTTP_DESTINATION" in environ:
            # Our native MOVE/COPY answer 204; RFC 4918 wants 201 when the destination is new.
            dest = unquote(urlparse(environ["HTTP_DESTINATION"]).path)
            try:
                created = not self.drive.exists(dest)
            except errors.MegaDriveError:
                created = False
            if created:
                def start(status: str, headers: Any, exc_info: Any = None) -> Any:
                    if status.startswith("204"):
                        status = "201 Created"
                    return start_response(status, headers, exc_info)

                return default_handler(environ, start)
        return default_handler(environ, start_response)

    def _finite_propfind(self, environ: dict[str, Any]) -> None:
        """PROPFIND with Depth infinity (also what no Depth header means), bounded.

        On a file or a missing resource infinity answers as Depth 0 would (webdav4
        and fsspec send no Depth to stat a file). On a folder the whole subtree is
        answered if it holds at most MAX_INFINITE_PROPFIND entries (webdav4's
        isdir() sends no Depth on folders too); a bigger one is refused (RFC 4918
        9.1, as Apache and IIS refuse every one), so one request never costs more
        than that many entries of memory and work.
        """
        if environ.get("HTTP_DEPTH") not in (None, "infinity"):
            return
        path = environ["PATH_INFO"]
        try:
            with dav_errors():
                is_folder = self.drive.stat(path).is_dir
        except DAVError as e:
            if e.value >= 500:
                raise
            is_folder = False  # missing, or a path through a file: Depth 0 answers that (404)
        if not is_folder:
            environ["HTTP_DEPTH"] = "0"
            return
        with dav_errors():
            small = self._subtree_within(path, MAX_INFINITE_PROPFIND)
        if not small:
            raise DAVError(HTTP_FORBIDDEN, err_condition=PRECONDITION_CODE_PropfindFiniteDepth,
                           context_info=f"PROPFIND with Depth: infinity on a folder of more than "
                                        f"{MAX_INFINITE_PROPFIND} entries is not supported")
        environ["HTTP_DEPTH"] = "infinity"

    def _subtree_within(self, path: str, limit: int) -> bool:
        """Whether the folder at ``path`` holds at most ``limit`` entries, at any depth (stops counting past it)."""
        count, todo = 0, [path]
        while todo:
            folder = todo.pop()
            for e in self.drive.listdir(folder):
                count += 1
                if count > limit:
                    return False
                if e.is_dir:
                    todo.append(join(folder, e.name))
        return True

    def _admit_win32_proppatch(self, environ: dict[str, Any]) -> None:
        """Let a PROPPATCH that only sets Win32 times/attributes through a lock without its token.

        Windows' mini-redirector (and so MS Office) sends it that way after
        saving a locked file; IIS accepts it, so must we. Anything else in the
        body and the ordinary lock check applies.
        """
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        if not 0 < length <= MAX_PROPPATCH_PEEK or self.lock_manager is None:
            return
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            root = safe_xml.fromstring(body)
        except (safe_xml.ParseError, ValueError, DefusedXmlException):
            return
        names = [child.tag for prop in root.iter("{DAV:}prop") for child in prop]
        if not names or not all(isinstance(n, str) and n.startswith(WIN32_NS) for n in names):
            return
        util.parse_if_header_dict(environ)
        url = quote(self.share_path + environ["PATH_INFO"])
        tokens = [lock["token"] for lock in self.lock_manager.get_indirect_url_lock_list(url)]
        environ["wsgidav.ifLockTokenList"] = list(environ["wsgidav.ifLockTokenList"]) + tokens

    def is_readonly(self) -> bool:
        return False

    def get_resource_inst(self, path: str | None, environ: dict[str, Any]) -> Any:
        environ["megadrive.drive"] = self.drive
        if path is None:  # wsgidav asks for the parent of "/"
            return None
        try:
            with dav_errors():
                entry = self.drive.stat(path)
        except DAVError as e:
            if e.value == HTTP_NOT_FOUND:
                return None
            if e.value == HTTP_CONFLICT:  # a path through a file: nothing there
                return None
            raise
        if entry.is_dir:
            return FolderResource(path, environ, entry)
        return FileResource(path, environ, entry)


def _method(environ: dict[str, Any]) -> str:
    """The request method as a log may show it (it comes from the client)."""
    m = str(environ.get("REQUEST_METHOD", ""))
    return m if m.isascii() and m.isalpha() and len(m) <= 16 else "?"


def as_dav_error(e: BaseException) -> DAVError:
    """Any failure inside wsgidav as the status it deserves; what is no client's fault is a logged 500."""
    if isinstance(e, DAVError) and e.src_exception is not None and not isinstance(e.src_exception, DAVError):
        e = e.src_exception  # wsgidav wrapped a foreign exception (a PUT's body copy does)
    if isinstance(e, DAVError):
        return e
    if isinstance(e, errors.MegaDriveError):
        return dav_error(e)
    if isinstance(e, ClientTooSlow):
        return DAVError(HTTP_REQUEST_TIMEOUT, context_info="the request came too slowly")
    if isinstance(e, MalformedBody):
        return DAVError(HTTP_BAD_REQUEST, context_info=str(e))
    if isinstance(e, ConnectionError):
        return DAVError(HTTP_BAD_REQUEST, context_info="the connection failed before the request was read")
    log.error("internal error: %s", type(e).__name__)
    log.debug("internal error", exc_info=e)  # (`megadrive -v`: the traceback, which may name files)
    return LoggedError(HTTP_INTERNAL_ERROR, context_info="the gateway failed to carry out the request")


def _wsgidav_error_page(sub: Any) -> DAVError | None:
    """An error page wsgidav built itself, outside any exception (the one error of a DELETE or MOVE), as the
    DAVError to render again: its HTML carries wsgidav's version, a date and at times a Python repr."""
    code_text = str(sub.status).split(" ", 1)[0]
    if not code_text.isdigit() or int(code_text) < 400:
        return None
    headers = list(sub.response_headers or [])
    if not any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers):
        return None
    keep = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length", "date")]
    return DAVError(int(code_text), add_headers=keep)


class ErrorPages(BaseMiddleware):  # type: ignore[misc]
    """wsgidav's ErrorPrinter without its failures: every error is one text line, never a traceback or repr.

    A status raised as :class:`DAVError` is sent with its one-line context
    (or the XML of its precondition); anything else is mapped by
    :func:`as_dav_error`. Refusals (:data:`REFUSALS`) get a log line. An error
    after the first body byte cannot change the status: the connection is
    cut instead (the client sees a short body).
    """

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        sub = util.SubAppStartResponse()
        started = False
        err: DAVError | None = None
        try:
            app_iter = self.next_app(environ, sub)
            try:
                for chunk in app_iter:
                    if not started:
                        err = _wsgidav_error_page(sub)
                        if err is not None:
                            break
                        start_response(sub.status, sub.response_headers, sub.exc_info)
                        started = True
                    yield chunk
            finally:
                if hasattr(app_iter, "close"):
                    app_iter.close()
            if not started and err is None:
                err = _wsgidav_error_page(sub)
                if err is None:
                    start_response(sub.status, sub.response_headers, sub.exc_info)
                    return
        except Exception as e:  # noqa: BLE001 - the one place where every failure becomes a status
            err = as_dav_error(e)
            if started:
                raise ConnectionAbortedError(f"response cut short ({err.value})") from None
        if err is not None:
            yield from self._page(environ, start_response, err)

    @staticmethod
    def _page(environ: dict[str, Any], start_response: Any, err: DAVError) -> Iterator[bytes]:
        try:
            status = f"{err.value} {HTTPStatus(err.value).phrase}"
        except ValueError:
            status = get_http_status_string(err)
        if err.value in REFUSALS:
            log.warning("refused %s request: %s", _method(environ), status)
        elif err.value >= 500 and not isinstance(err, LoggedError):
            log.error("%s request failed: %s", _method(environ), status)
        headers = [("Date", util.get_rfc1123_time()), *(err.add_headers or [])]
        if err.value in (HTTP_NOT_MODIFIED, HTTP_NO_CONTENT):
            start_response(status, [("Content-Length", "0"), *headers])
            return
        if err.err_condition:
            content_type, body = "application/xml; charset=utf-8", err.err_condition.as_string().encode()
        else:
            context = str(err.context_info or "").strip().splitlines()
            shown = context and (err.value < 500 or isinstance(err, LoggedError))
            text = f"{status}: {context[0][:300]}" if shown else status
            content_type, body = "text/plain; charset=utf-8", f"{text}\n".encode()
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
        if err.add_body and environ.get("REQUEST_METHOD") != "HEAD":
            yield body
