"""Helpers for Lyceum policy plugins written in Python.

The counterparts of the Rust SDK's ``refusal``, ``parse_config``, ``log_line`` and
``fixed_window_allows``, plus the verdicts. The module has no dependencies besides the
bindings componentize-py generates for the world being built (the ``wit_world`` package),
so it can be copied into any plugin.

How componentize-py 0.25.1 maps the WIT types to Python:

- a variant is one dataclass per case, named after the type and the case
  (``Verdict_Reject(value=Refusal(...))``, ``Verdict_Allow()``); its union is ``Verdict``;
- an enum is an ``enum.Enum`` (``Level.WARN``, ``Role.INSTRUCTOR``);
- a record is a dataclass with snake_case fields (``ctx.actor_id``, ``ctx.at_unix_ms``);
- an ``option<T>`` is ``None`` or the value;
- a ``result`` of an import returns its ``ok`` value or raises
  ``componentize_py_types.Err`` whose ``value`` is the ``err`` value (for ``kv``, a
  ``KvError_Unavailable()``, ``KvError_Invalid(value=...)`` or ``KvError_Full()``);
- integers of every width are ``int``.

Each world exports one interface, and only its bindings exist in a component: ``reject`` and
``allow`` answer with the verdict type of the world at hand (moderation or files; moderation
or signaling joins), ``deny`` and ``drop`` need the signaling world.
"""

import json
from typing import Any, Dict, Union

from wit_world.imports import config, kv, log
from wit_world.imports.types import Refusal

try:
    from wit_world.exports import moderation as _moderation
except ImportError:
    _moderation = None
try:
    from wit_world.exports import files as _files
except ImportError:
    _files = None
try:
    from wit_world.exports import signaling as _signaling
except ImportError:
    _signaling = None

__all__ = [
    "config",
    "kv",
    "log",
    "refusal",
    "reject",
    "deny",
    "drop",
    "allow",
    "parse_config",
    "log_line",
    "fixed_window_allows",
]

_S64_MAX = (1 << 63) - 1


def refusal(code: str, reason: str) -> Refusal:
    """A refusal: a snake_case ``code`` (clients see it as ``details.reason``) and a sentence."""
    return Refusal(code=str(code), reason=str(reason))


def reject(code: str, reason: str):
    """A chat verdict (or, in the file-validation world, a file verdict) refusing."""
    if _moderation is not None:
        return _moderation.Verdict_Reject(refusal(code, reason))
    if _files is not None:
        return _files.FileVerdict_Reject(refusal(code, reason))
    raise RuntimeError("reject is a verdict of the chat-moderation and file-validation worlds")


def deny(code: str, reason: str):
    """A join verdict keeping the user out (signaling-policy world)."""
    if _signaling is None:
        raise RuntimeError("deny is a verdict of the signaling-policy world")
    return _signaling.JoinVerdict_Deny(refusal(code, reason))


def drop(code: str, reason: str):
    """A signal verdict not delivering the signal (signaling-policy world)."""
    if _signaling is None:
        raise RuntimeError("drop is a verdict of the signaling-policy world")
    return _signaling.SignalVerdict_Drop(refusal(code, reason))


def allow():
    """The verdict letting a message (or, in the signaling-policy world, a join) through."""
    if _moderation is not None:
        return _moderation.Verdict_Allow()
    if _signaling is not None:
        return _signaling.JoinVerdict_Allow()
    raise RuntimeError("allow is a verdict of the chat-moderation and signaling-policy worlds")


def parse_config() -> Dict[str, Any]:
    """The plugin's configuration table as a dict.

    Invalid configuration is logged and answered with ``{}``, so the plugin runs on its
    defaults and the operator sees why. The configuration of an instance never changes:
    parse it once and keep the result.
    """
    try:
        parsed = json.loads(config.get_json())
    except ValueError as e:
        log_line("error", f"invalid configuration: {e}")
        return {}
    if not isinstance(parsed, dict):
        log_line("error", "invalid configuration: not a JSON object")
        return {}
    return parsed


def log_line(level: Union[str, "log.Level"], message: str) -> None:
    """Writes a line to the server's log under the plugin's name.

    ``level`` is a ``log.Level`` or its name (``"trace"``, ``"debug"``, ``"info"``,
    ``"warn"``, ``"error"``). Never log the content being judged.
    """
    if not isinstance(level, log.Level):
        level = log.Level[str(level).upper()]
    log.log(level, str(message))


def fixed_window_allows(key: str, limit: int, window_ms: int, at_unix_ms: int) -> bool:
    """Counts one event against a fixed-window limit kept in ``kv``.

    Returns whether the event is within ``limit`` events per window of ``window_ms``
    milliseconds, windows being aligned on multiples of ``window_ms`` since the epoch. ``key``
    identifies what is counted (say ``"msg:" + ctx.actor_id``); the window number is appended.
    The counter is created with a lifetime of one window, so the store cleans up after itself.
    ``at_unix_ms`` is the request's time, ``ctx.at_unix_ms``.

    When the store fails, the ``Err`` that ``kv.incr`` raised propagates (its ``value`` is the
    ``KvError``): the caller decides whether to let the event through, as the Rust SDK leaves
    it to its caller.
    """
    window_ms = max(int(window_ms), 1)
    now = max(int(at_unix_ms), 0)
    window = now // window_ms
    remaining = window_ms - now % window_ms
    count = kv.incr(f"{key}:{window}", 1, remaining)
    return count <= min(max(int(limit), 0), _S64_MAX)
