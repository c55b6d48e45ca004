"""{{name}}: a Lyceum chat moderation plugin.

Refuses messages containing a ``blocked`` phrase, in any case, and limits each user to
``maxPerWindow`` messages per ``windowMs`` milliseconds. Configuration (in ``plugins.toml``,
or ``config`` in ``cases.json``)::

    {"blocked": ["buy followers"], "maxPerWindow": 3, "windowMs": 60000}
"""

from typing import Any, List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.moderation import Message, Verdict
from wit_world.imports.types import Context

from lyceum import allow, fixed_window_allows, log_line, parse_config, reject


def _positive_integer(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


class _Settings:
    def __init__(self, raw: dict) -> None:
        blocked = raw.get("blocked")
        self.blocked: List[str] = [
            p.lower() for p in (blocked if isinstance(blocked, list) else [])
            if isinstance(p, str) and p
        ]
        # No limit without a positive ``maxPerWindow``.
        self.max_per_window = _positive_integer(raw.get("maxPerWindow"))
        self.window_ms = _positive_integer(raw.get("windowMs")) or 10_000


# Read once per instance: an instance's configuration never changes, and a new instance
# starts with fresh memory and reads it again.
_settings: Optional[_Settings] = None


def _current_settings() -> _Settings:
    global _settings
    if _settings is None:
        _settings = _Settings(parse_config())
    return _settings


class Moderation(exports.Moderation):
    def moderate(self, ctx: Context, message: Message) -> Verdict:
        settings = _current_settings()

        if settings.max_per_window is not None:
            # Counted in the host's store: guest memory may be gone by the next call.
            within = True
            try:
                within = fixed_window_allows(
                    f"msg:{ctx.actor_id}",
                    settings.max_per_window,
                    settings.window_ms,
                    ctx.at_unix_ms,
                )
            except Err as e:
                # A store that is down should not silence the chat: skip the limit, say so.
                log_line("warn", f"rate limit skipped, the store failed: {e.value!r}")
            if not within:
                # The server answers this code like its own limit: RATE_LIMITED.
                return reject("rate_limited", "You are sending messages too quickly.")

        content = message.content.lower()
        if any(phrase in content for phrase in settings.blocked):
            return reject("blocked_phrase", "This message contains a blocked phrase.")
        return allow()
