"""A chat moderation plugin in Python, to copy and adapt.

The Rust template's policy (refuse messages containing a configured phrase, count the
refusals in ``kv``) plus a per-user fixed-window rate limit. Configure it in
``plugins.toml``::

    [[chat.plugins]]
    source = "plugins/template_python.wasm"
    config = { blocked = ["buy followers"], maxPerWindow = 5, windowMs = 10000 }

``maxPerWindow`` and ``windowMs`` are optional: without ``maxPerWindow`` there is no limit.
"""

from typing import Any, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.moderation import Message, Verdict
from wit_world.imports.types import Context

from lyceum import allow, fixed_window_allows, kv, log_line, parse_config, reject


class _Settings:
    def __init__(self, raw: dict) -> None:
        blocked = raw.get("blocked")
        self.blocked = [
            p.lower() for p in (blocked if isinstance(blocked, list) else [])
            if isinstance(p, str) and p
        ]
        self.max_per_window = _positive_integer(raw.get("maxPerWindow"))
        self.window_ms = _positive_integer(raw.get("windowMs")) or 10_000


def _positive_integer(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


# Parsed once per instance: an instance's configuration never changes, and a new instance
# starts with fresh memory and parses it again.
_settings: Optional[_Settings] = None


def _current_settings() -> _Settings:
    global _settings
    if _settings is None:
        _settings = _Settings(parse_config())
    return _settings


def _describe(error: Err) -> str:
    value = error.value
    detail = getattr(value, "value", None)
    name = type(value).__name__.split("_")[-1].lower()
    return name if detail is None else f"{name}: {detail}"


class Moderation(exports.Moderation):
    def moderate(self, ctx: Context, message: Message) -> Verdict:
        settings = _current_settings()

        if settings.max_per_window is not None:
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
                log_line("warn", f"rate limit skipped, the store failed: {_describe(e)}")
            if not within:
                # The server answers this code like its own limit: RATE_LIMITED with a delay.
                return reject("rate_limited", "You are sending messages too quickly.")

        content = message.content.lower()
        if any(phrase in content for phrase in settings.blocked):
            # Counters live in the host store: guest memory may be gone by the next call.
            try:
                kv.incr("refused", 1, None)
            except Err as e:
                log_line("warn", f"could not count a refusal: {_describe(e)}")
            return reject("blocked_phrase", "This message contains a blocked phrase.")
        return allow()
