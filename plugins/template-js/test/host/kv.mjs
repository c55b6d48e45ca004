// The semantics of the server's store: a missing or expired key counts as absent, and `incr`
// creates a key with the given lifetime and keeps that lifetime however often it counts.
import { ComponentError, host } from './state.mjs';

function live(key) {
  if (host.failure) throw new ComponentError(host.failure);
  if (typeof key !== 'string' || key === '' || key.length > 256) {
    throw new ComponentError({ tag: 'invalid', val: 'bad key' });
  }
  const entry = host.store.get(key);
  if (entry && entry.expiresAt !== undefined && entry.expiresAt <= host.now) {
    host.store.delete(key);
    return undefined;
  }
  return entry;
}

function checkTtl(ttlMs) {
  if (ttlMs !== undefined && typeof ttlMs !== 'bigint') {
    throw new TypeError(`ttl-ms must be a BigInt or undefined, got ${typeof ttlMs}`);
  }
}

export function get(key) {
  return live(key)?.value;
}

export function set(key, value, ttlMs) {
  checkTtl(ttlMs);
  live(key);
  host.store.set(key, { value, expiresAt: ttlMs === undefined ? undefined : host.now + ttlMs });
}

export function incr(key, delta, ttlMs) {
  if (typeof delta !== 'bigint') throw new TypeError('delta must be a BigInt');
  checkTtl(ttlMs);
  const entry = live(key);
  if (entry) {
    entry.value = String(BigInt(entry.value) + delta);
    return BigInt(entry.value);
  }
  host.store.set(key, {
    value: String(delta),
    expiresAt: ttlMs === undefined ? undefined : host.now + ttlMs,
  });
  return delta;
}
