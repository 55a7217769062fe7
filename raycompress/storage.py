"""Where results live: a local folder, or a folder in object storage under a URI.

    folder(where)   a local path → pathlib.Path; "s3://…", "gs://…", … → Remote, a folder
                    of the same shape on the URI's filesystem (pyarrow's, the one Ray Tune
                    writes with)
    check(uri)      a one-line UsageError now, before Ray starts, when the storage cannot be
                    reached: an unknown scheme, an endpoint that does not answer, missing
                    credentials, a bucket that does not exist

`Remote` offers the few methods of `pathlib.Path` that the record and the readers use (`/`,
`name`, `exists`, `is_dir`, `iterdir`, `glob`, `read_text`, `write_text`, `mkdir`), so that an
experiment folder reads the same from either place. Credentials and endpoints are the
filesystem's own settings (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL,
AWS_DEFAULT_REGION or a profile; for GCS: Google's application default credentials).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from pyarrow import fs


def is_uri(where: str | Path) -> bool:
    return "://" in str(where)


@dataclass(frozen=True)
class Remote:
    """A folder at `path` of the filesystem `filesystem`, named by `uri`."""

    filesystem: fs.FileSystem
    path: str
    uri: str

    def __truediv__(self, name: str) -> Remote:
        return Remote(self.filesystem, f"{self.path}/{name}", f"{self.uri.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return self.uri

    def __lt__(self, other: Remote) -> bool:
        return self.path < other.path

    @property
    def parent(self) -> Remote:
        return Remote(self.filesystem, self.path.rsplit("/", 1)[0], self.uri.rsplit("/", 1)[0])

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def _type(self) -> fs.FileType:
        return self.filesystem.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != fs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._type() == fs.FileType.Directory

    def is_file(self) -> bool:
        return self._type() == fs.FileType.File

    def iterdir(self) -> list[Remote]:
        infos = self.filesystem.get_file_info(fs.FileSelector(self.path, allow_not_found=True))
        return sorted((self / info.base_name for info in infos), key=lambda r: r.path)

    def glob(self, pattern: str) -> list[Remote]:
        """The entries below matching a pattern of "/"-separated fnmatch parts."""
        first, _, rest = pattern.partition("/")
        matches = [e for e in self.iterdir() if fnmatch.fnmatchcase(e.name, first)]
        if not rest:
            return matches
        return [found for entry in matches if entry.is_dir() for found in entry.glob(rest)]

    def read_text(self) -> str:
        with self.filesystem.open_input_stream(self.path) as stream:
            return stream.read().decode()

    def write_text(self, text: str) -> None:
        with self.filesystem.open_output_stream(self.path) as stream:
            stream.write(text.encode())

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.filesystem.create_dir(self.path, recursive=parents)


Folder = Path | Remote


def arrow(where: Folder) -> tuple[fs.FileSystem, str]:
    """The pyarrow filesystem and path of a folder or file: what Parquet reads and writes."""
    if isinstance(where, Remote):
        return where.filesystem, where.path
    return fs.LocalFileSystem(), str(Path(where).resolve())


def write_atomically(target: Folder, data: bytes) -> None:
    """Write `data` at `target` so that a reader sees the old file or the new one, never part
    of one: locally written beside, then renamed over it; in object storage one upload, which
    becomes visible only once complete."""
    if isinstance(target, Remote):
        target.filesystem.create_dir(target.parent.path, recursive=True)
        with target.filesystem.open_output_stream(target.path) as stream:
            stream.write(data)
        return
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def folder(where: str | Path | Remote) -> Folder:
    """A local folder (`~` expanded) or the folder of a URI."""
    if isinstance(where, Remote):
        return where
    if not is_uri(where):
        return Path(where).expanduser()
    filesystem, path = fs.FileSystem.from_uri(str(where))
    return Remote(filesystem, path.rstrip("/"), str(where).rstrip("/"))


class StorageError(ValueError):
    """The storage of a URI cannot be used: one line saying what to set."""


# How long the check waits for an endpoint: an unreachable one is a line now, not minutes of
# retries once Ray has started.
CONNECT_SECONDS = 5


def check(where: str) -> None:
    """Raise a one-line StorageError unless results can be written at `where`: a local folder
    (or a path whose first existing part is a folder: the rest is created) or a URI whose
    bucket can be listed here."""
    if not is_uri(where):
        _check_local(Path(where).expanduser())
        return
    uri = where
    scheme, _, rest = uri.partition("://")
    bucket = rest.split("?", 1)[0].split("/", 1)[0]
    try:
        if scheme == "s3" and "?" not in uri:  # options in the URI: pyarrow's own parsing
            filesystem: fs.FileSystem = fs.S3FileSystem(
                endpoint_override=os.environ.get("AWS_ENDPOINT_URL"),
                connect_timeout=CONNECT_SECONDS, request_timeout=CONNECT_SECONDS,
                retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1),
            )  # fmt: skip
        else:
            filesystem, _ = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(bucket)
    except (OSError, ValueError) as err:  # pyarrow's ArrowIOError, ArrowInvalid
        raise StorageError(_explained(uri, scheme, str(err))) from None
    if info.type == fs.FileType.NotFound:
        raise StorageError(
            f"{uri}: the bucket {bucket!r} does not exist; create it (or pass an existing one)"
        )


def _check_local(path: Path) -> None:
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise StorageError(
            f"the storage path {path} {'is' if existing == path else 'lies under'} a file "
            f"({existing}): name a folder, or a path to create one"
        )


def _explained(uri: str, scheme: str, error: str) -> str:
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    if scheme != "s3":
        return f"cannot use {uri}: {first}; check the filesystem's credentials"
    lower = error.lower()
    if any(word in lower for word in ("curl", "connect", "resolve")):
        hint = "check AWS_ENDPOINT_URL (for an S3-compatible store) and the network"
    elif not _aws_credentials():
        hint = (
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    else:
        hint = "check the credentials (AWS_*), their permissions and AWS_ENDPOINT_URL"
    return f"cannot use {uri}: {first}; {hint}"


def _aws_credentials() -> bool:
    """Whether this process is given AWS credentials: keys, a profile, a web identity, a
    container's, or a shared credentials file (an instance role would not show here)."""
    named = (
        "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    )  # fmt: skip
    shared = os.environ.get("AWS_SHARED_CREDENTIALS_FILE", Path.home() / ".aws" / "credentials")
    return any(os.environ.get(name) for name in named) or Path(shared).is_file()
