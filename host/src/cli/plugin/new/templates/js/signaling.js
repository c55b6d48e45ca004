// {{name}}: a Lyceum signaling policy plugin.
//
// Caps the participants of a session's call and relays every signal. Configuration (in
// `plugins.toml`, or `config` in `cases.json`):
//
//   {"maxParticipants": 3}

import { allow, deny, parseConfig } from './lyceum.js';

// Read once per instance: an instance's configuration never changes, and a new instance
// starts with fresh memory and reads it again. Only the session's own limit applies
// without a positive `maxParticipants`.
let maxParticipants;

function currentMax() {
  if (maxParticipants === undefined) {
    const raw = parseConfig().maxParticipants;
    maxParticipants = Number.isInteger(raw) && raw > 0 ? raw : null;
  }
  return maxParticipants;
}

export const signaling = {
  checkJoin(ctx, request) {
    // The lower of this plugin's cap and the session's own limit.
    const limits = [currentMax(), request.maxParticipants].filter(
      (limit) => limit !== null && limit !== undefined,
    );
    if (limits.length > 0 && request.participantCount >= Math.min(...limits)) {
      return deny('session_full', 'This session is full.');
    }
    return allow();
  },

  checkSignal(ctx, signal) {
    return { tag: 'relay' };
  },
};
