"""{{name}}: a Lyceum signaling policy plugin.

Caps the participants of a session's call and relays every signal. Configuration (in
``plugins.toml``, or ``config`` in ``cases.json``)::

    {"maxParticipants": 3}
"""

from typing import Optional

from wit_world import exports
from wit_world.exports.signaling import (
    JoinRequest,
    JoinVerdict,
    Signal,
    SignalVerdict,
    SignalVerdict_Relay,
)
from wit_world.imports.types import Context

from lyceum import allow, deny, parse_config

# Read once per instance: an instance's configuration never changes, and a new instance
# starts with fresh memory and reads it again. ``None``: only the session's own limit.
_max_participants: Optional[int] = None
_read = False


def _current_max() -> Optional[int]:
    global _max_participants, _read
    if not _read:
        raw = parse_config().get("maxParticipants")
        if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
            _max_participants = raw
        _read = True
    return _max_participants


class Signaling(exports.Signaling):
    def check_join(self, ctx: Context, request: JoinRequest) -> JoinVerdict:
        # The lower of this plugin's cap and the session's own limit.
        limits = [n for n in (_current_max(), request.max_participants) if n is not None]
        if limits and request.participant_count >= min(limits):
            return deny("session_full", "This session is full.")
        return allow()

    def check_signal(self, ctx: Context, signal: Signal) -> SignalVerdict:
        return SignalVerdict_Relay()
