"""Names that become paths: one safe component, and paths that must stay inside a folder.

Sweep names, run ids, aliases and experiment names come from configs, the command line, a
browser's URL or a tracking server. Joined onto a folder as they are, ``../x`` climbs out of
it and ``/etc`` replaces it (``Path("ws") / "/etc"`` is ``/etc``). Every such join goes
through :func:`safe_component` (reject) or :func:`sanitized_component` (map onto a safe name),
and a path that must not leave its folder (symbolic links included) through :func:`inside`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

from bao.configuration import ConfigError

_SEPARATORS: Final = ("/", "\\")
_UNSAFE_CHARACTER: Final = re.compile(r"[\x00-\x1f\x7f]")
_SANITIZE: Final = re.compile(r"[^A-Za-z0-9_.-]")
MAX_COMPONENT: Final = 200
"""Below the 255 bytes most file systems allow for one name, leaving room for suffixes."""


class UnsafePathError(ConfigError):
    """A name that would not stay one path component, or a path that leaves its folder.

    A :class:`~bao.configuration.ConfigError`: the CLI prints it as one line and the
    dashboard shows it like any other bad input.
    """


def safe_component(value: object, *, what: str, pattern: str | None = None, fix: str = "") -> str:
    """``value`` itself, if it is usable as exactly one file name inside a folder.

    Rejected: non-strings, the empty name, ``.`` and ``..``, separators (``/`` and ``\\``,
    so a name means the same on every system), control characters (NUL ends the name in the
    C library), names over :data:`MAX_COMPONENT` characters, and with ``pattern`` any name
    that does not match it in full.

    Raises:
        UnsafePathError: naming ``what`` and echoing the value.
    """
    fix = fix or "use letters, digits, '.', '_' and '-' only, with no '/' or '..'"
    if not isinstance(value, str):
        raise UnsafePathError(f"{what} must be a string", value=value, fix=fix)
    if value in ("", ".", ".."):
        problem = "is not a file name"
    elif any(separator in value for separator in _SEPARATORS):
        problem = "contains a path separator"
    elif _UNSAFE_CHARACTER.search(value):
        problem = "contains a control character"
    elif len(value) > MAX_COMPONENT:
        problem = f"is longer than {MAX_COMPONENT} characters"
    elif pattern is not None and re.fullmatch(pattern, value) is None:
        problem = "has characters or a form that is not allowed"
    else:
        return value
    raise UnsafePathError(f"{what} {problem}", value=value, fix=fix)


def sanitized_component(value: str) -> str:
    """A safe file name for any string (for names MLflow or a user may spell freely).

    Names made only of letters, digits, ``.``, ``_`` and ``-`` (and not all dots) are kept
    as they are; any other name has each other character replaced by ``_`` and a short
    hash of the original appended, so two different names never share a folder.
    """
    cleaned = _SANITIZE.sub("_", value)
    if cleaned == value and value.strip(".") and len(value) <= MAX_COMPONENT:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    stem = cleaned.strip(".")[: MAX_COMPONENT - len(digest) - 1]
    return f"{stem}-{digest}" if stem else digest


def inside(base: Path, path: str | Path, *, what: str) -> Path:
    """``base / path`` with links and ``..`` resolved, if it is ``base`` or below it.

    Raises:
        UnsafePathError: the resolved path is outside ``base`` (an absolute ``path``, ``..``
            or a symbolic link pointing elsewhere).
    """
    root = base.resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(
            f"{what} {str(path)!r} leads outside {str(root)!r} (to {str(target)!r})",
            fix="give a path inside that folder, without '..' or a link leading out of it",
        )
    return target
