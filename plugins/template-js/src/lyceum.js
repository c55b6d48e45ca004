// Helpers for Lyceum policy plugins written in JavaScript: the counterparts of the Rust SDK's
// `refusal`, `parse_config`, `log_line` and `fixed_window_allows`, plus the verdicts.
//
// Plain ES module without dependencies, so it can be copied into any plugin. It imports the
// three host interfaces of `lyceum:policy@0.1.0`, which componentize-js links to the host
// when it builds the component.
//
// How componentize-js 0.23 maps the WIT types to JavaScript:
// - a variant is `{ tag, val }` (`{ tag: 'allow' }` when the case has no payload);
// - an enum is its case name as a string (`'warn'`);
// - an `option<T>` is `undefined` or the value;
// - a `result` of an import returns its `ok` value or throws an error whose `payload` is the
//   `err` value (for `kv`, a `kv-error` variant such as `{ tag: 'unavailable' }`);
// - `u64` and `s64` are BigInts (`ctx.atUnixMs`, `ttl-ms`, what `kv.incr` returns);
// - record fields are camelCase (`actorId`, `atUnixMs`).

import * as config from 'lyceum:policy/config@0.1.0';
import * as kv from 'lyceum:policy/kv@0.1.0';
import * as log from 'lyceum:policy/log@0.1.0';

export { config, kv, log };

/** A `refusal`: a snake_case `code` (clients see it as `details.reason`) and a sentence. */
export function refusal(code, reason) {
  return { code: String(code), reason: String(reason) };
}

/** A chat or file verdict refusing with `refusal(code, reason)`. */
export function reject(code, reason) {
  return { tag: 'reject', val: refusal(code, reason) };
}

/** A join verdict keeping the user out with `refusal(code, reason)`. */
export function deny(code, reason) {
  return { tag: 'deny', val: refusal(code, reason) };
}

/** A signal verdict not delivering the signal, with `refusal(code, reason)`. */
export function drop(code, reason) {
  return { tag: 'drop', val: refusal(code, reason) };
}

/** The verdict letting a message or a join through. */
export function allow() {
  return { tag: 'allow' };
}

/**
 * The plugin's configuration table as an object. Invalid configuration is logged and
 * answered with `{}`, so the plugin runs on its defaults and the operator sees why.
 * The configuration of an instance never changes: parse it once and keep the result.
 */
export function parseConfig() {
  let parsed;
  try {
    parsed = JSON.parse(config.getJson());
  } catch (e) {
    logLine('error', `invalid configuration: ${e && e.message ? e.message : e}`);
    return {};
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    logLine('error', 'invalid configuration: not a JSON object');
    return {};
  }
  return parsed;
}

/**
 * Writes a line to the server's log under the plugin's name. `level` is one of `trace`,
 * `debug`, `info`, `warn`, `error`. Never log the content being judged.
 */
export function logLine(level, message) {
  log.log(level, String(message));
}

/**
 * Counts one event against a fixed-window limit kept in `kv`.
 *
 * Returns whether the event is within `limit` events per window of `windowMs` milliseconds,
 * windows being aligned on multiples of `windowMs` since the epoch. `key` identifies what is
 * counted (say `'msg:' + ctx.actorId`); the window number is appended. The counter is created
 * with a lifetime of one window, so the store cleans up after itself. `atUnixMs` is the
 * request's time, `ctx.atUnixMs`.
 *
 * Numbers and BigInts are both accepted. When the store fails, the error `kv.incr` threw is
 * thrown on (its `payload` is the `kv-error`): the caller decides whether to let the event
 * through, as the Rust SDK leaves it to its caller.
 */
export function fixedWindowAllows(key, limit, windowMs, atUnixMs) {
  let window = toU64(windowMs);
  if (window < 1n) window = 1n;
  const now = toU64(atUnixMs);
  const number = now / window;
  const remaining = window - (now % window);
  const count = kv.incr(`${key}:${number}`, 1n, remaining);
  return BigInt(count) <= clampToS64(toU64(limit));
}

const U64_MAX = (1n << 64n) - 1n;
const S64_MAX = (1n << 63n) - 1n;

function toU64(value) {
  let n;
  if (typeof value === 'bigint') {
    n = value;
  } else {
    const number = Number(value);
    n = Number.isFinite(number) ? BigInt(Math.trunc(number)) : number > 0 ? U64_MAX : 0n;
  }
  if (n < 0n) return 0n;
  return n > U64_MAX ? U64_MAX : n;
}

function clampToS64(n) {
  return n > S64_MAX ? S64_MAX : n;
}
