"""{{name}}: a Lyceum file validation plugin.

Refuses uploads by extension and by size. Configuration (in ``plugins.toml``, or ``config``
in ``cases.json``)::

    {"blockedExtensions": ["exe", "bat"], "maxBytes": 10485760}
"""

from typing import List, Optional

from wit_world import exports
from wit_world.exports.files import (
    FileVerdict,
    FileVerdict_Accept,
    Placement,
    UploadDone,
    UploadHead,
)
from wit_world.imports.types import Context

from lyceum import parse_config, reject


class _Settings:
    def __init__(self, raw: dict) -> None:
        blocked = raw.get("blockedExtensions")
        self.blocked_extensions: List[str] = [
            e.lstrip(".").lower() for e in (blocked if isinstance(blocked, list) else [])
            if isinstance(e, str) and e.lstrip(".")
        ]
        # No limit without a positive ``maxBytes``.
        max_bytes = raw.get("maxBytes")
        self.max_bytes: Optional[int] = (
            max_bytes
            if isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes > 0
            else None
        )


# Read once per instance: an instance's configuration never changes, and a new instance
# starts with fresh memory and reads it again.
_settings: Optional[_Settings] = None


def _current_settings() -> _Settings:
    global _settings
    if _settings is None:
        _settings = _Settings(parse_config())
    return _settings


def _extension(name: str) -> Optional[str]:
    """The part of the name after its last dot, lowercased."""
    return name.rsplit(".", 1)[1].lower() if "." in name else None


def _too_large(size: Optional[int]) -> Optional[FileVerdict]:
    max_bytes = _current_settings().max_bytes
    if max_bytes is not None and size is not None and size > max_bytes:
        return reject("too_large", "This file is larger than allowed.")
    return None


def _accept() -> FileVerdict:
    """Accepted as it is: no other folder, no other name."""
    return FileVerdict_Accept(Placement(folder=None, name=None))


class Files(exports.Files):
    def precheck(self, ctx: Context, upload: UploadHead) -> FileVerdict:
        extension = _extension(upload.name)
        if extension is not None and extension in _current_settings().blocked_extensions:
            return reject("type_not_allowed", "Files of this type are not accepted.")
        # Refused before a byte is kept, when the client says how large it is.
        return _too_large(upload.declared_size) or _accept()

    def finish(self, ctx: Context, upload: UploadDone) -> FileVerdict:
        # A client may declare no size, or a false one: the real size decides.
        return _too_large(upload.size) or _accept()
