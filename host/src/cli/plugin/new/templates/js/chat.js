// {{name}}: a Lyceum chat moderation plugin.
//
// Refuses messages containing a `blocked` phrase, in any case, and limits each user to
// `maxPerWindow` messages per `windowMs` milliseconds. Configuration (in `plugins.toml`, or
// `config` in `cases.json`):
//
//   {"blocked": ["buy followers"], "maxPerWindow": 3, "windowMs": 60000}

import { allow, fixedWindowAllows, logLine, parseConfig, reject } from './lyceum.js';

// Read once per instance: an instance's configuration never changes, and a new instance
// starts with fresh memory and reads it again.
let settings;

function currentSettings() {
  if (settings === undefined) {
    const raw = parseConfig();
    const blocked = Array.isArray(raw.blocked)
      ? raw.blocked.filter((p) => typeof p === 'string' && p !== '').map((p) => p.toLowerCase())
      : [];
    // No limit without a positive `maxPerWindow`.
    const maxPerWindow = positiveInteger(raw.maxPerWindow);
    const windowMs = positiveInteger(raw.windowMs) ?? 10_000;
    settings = { blocked, maxPerWindow, windowMs };
  }
  return settings;
}

function positiveInteger(value) {
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

export const moderation = {
  moderate(ctx, message) {
    const { blocked, maxPerWindow, windowMs } = currentSettings();

    if (maxPerWindow !== undefined) {
      // Counted in the host's store: guest memory may be gone by the next call.
      let within = true;
      try {
        within = fixedWindowAllows(`msg:${ctx.actorId}`, maxPerWindow, windowMs, ctx.atUnixMs);
      } catch (e) {
        // A store that is down should not silence the chat: skip the limit, say so.
        logLine('warn', `rate limit skipped, the store failed: ${JSON.stringify(e && e.payload)}`);
      }
      if (!within) {
        // The server answers this code like its own limit: RATE_LIMITED.
        return reject('rate_limited', 'You are sending messages too quickly.');
      }
    }

    const content = message.content.toLowerCase();
    if (blocked.some((phrase) => content.includes(phrase))) {
      return reject('blocked_phrase', 'This message contains a blocked phrase.');
    }
    return allow();
  },
};
