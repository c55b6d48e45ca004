// A chat moderation plugin in JavaScript, to copy and adapt: the Rust template's policy
// (refuse messages containing a configured phrase, count the refusals in `kv`) plus a
// per-user fixed-window rate limit. Configure it in `plugins.toml`:
//
//   [[chat.plugins]]
//   source = "plugins/template_js.wasm"
//   config = { blocked = ["buy followers"], maxPerWindow = 5, windowMs = 10000 }
//
// `maxPerWindow` and `windowMs` are optional: without `maxPerWindow` there is no limit.

import { allow, fixedWindowAllows, kv, logLine, parseConfig, reject } from './lyceum.js';

// Parsed once per instance: an instance's configuration never changes, and a new instance
// starts with fresh memory and parses it again.
let settings;

function currentSettings() {
  if (settings === undefined) {
    const raw = parseConfig();
    const blocked = Array.isArray(raw.blocked)
      ? raw.blocked.filter((p) => typeof p === 'string' && p !== '').map((p) => p.toLowerCase())
      : [];
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
      let within = true;
      try {
        within = fixedWindowAllows(`msg:${ctx.actorId}`, maxPerWindow, windowMs, ctx.atUnixMs);
      } catch (e) {
        // A store that is down should not silence the chat: skip the limit, say so.
        logLine('warn', `rate limit skipped, the store failed: ${describe(e)}`);
      }
      if (!within) {
        // The server answers this code like its own limit: RATE_LIMITED with a retry delay.
        return reject('rate_limited', 'You are sending messages too quickly.');
      }
    }

    const content = message.content.toLowerCase();
    if (blocked.some((phrase) => content.includes(phrase))) {
      // Counters live in the host store: guest memory may be gone by the next call.
      try {
        kv.incr('refused', 1n, undefined);
      } catch (e) {
        logLine('warn', `could not count a refusal: ${describe(e)}`);
      }
      return reject('blocked_phrase', 'This message contains a blocked phrase.');
    }
    return allow();
  },
};

function describe(error) {
  const payload = error && error.payload !== undefined ? error.payload : error;
  if (payload && typeof payload === 'object' && 'tag' in payload) {
    return payload.val === undefined ? payload.tag : `${payload.tag}: ${payload.val}`;
  }
  return String(payload);
}
