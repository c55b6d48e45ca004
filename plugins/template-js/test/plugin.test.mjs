// The policy and the helpers under Node, against the in-memory host in ./host (see
// register.mjs). The built component is tested through the real server by the repository's
// black-box tests (tests/tests/plugin_languages.rs).
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';

import { host } from './host/state.mjs';
import {
  allow,
  deny,
  drop,
  fixedWindowAllows,
  logLine,
  parseConfig,
  refusal,
  reject,
} from '../src/lyceum.js';

let instances = 0;

/** A fresh instance of the plugin (its module state included) with `config`. */
async function plugin(config, now = 1_700_000_000_000n) {
  host.reset({ configJson: JSON.stringify(config), now });
  instances += 1;
  const { moderation } = await import(`../src/plugin.js?instance=${instances}`);
  return moderation;
}

function context(actorId, atUnixMs = host.now) {
  return {
    requestId: 'req-1',
    actorId,
    actorRole: 'student',
    courseId: 'course-1',
    roomId: 'room-1',
    sessionId: undefined,
    atUnixMs,
  };
}

function message(content) {
  return {
    roomId: 'room-1',
    messageId: undefined,
    event: 'send',
    content,
    replyTo: undefined,
    attachmentCount: 0,
  };
}

describe('verdicts', () => {
  it('are the variants componentize-js expects', () => {
    assert.deepEqual(refusal('too_long', 'Too long.'), { code: 'too_long', reason: 'Too long.' });
    assert.deepEqual(reject('a', 'b'), { tag: 'reject', val: { code: 'a', reason: 'b' } });
    assert.deepEqual(deny('a', 'b'), { tag: 'deny', val: { code: 'a', reason: 'b' } });
    assert.deepEqual(drop('a', 'b'), { tag: 'drop', val: { code: 'a', reason: 'b' } });
    assert.deepEqual(allow(), { tag: 'allow' });
  });
});

describe('parseConfig', () => {
  beforeEach(() => host.reset());

  it('parses the table', () => {
    host.configJson = '{"blocked":["x"],"maxPerWindow":3}';
    assert.deepEqual(parseConfig(), { blocked: ['x'], maxPerWindow: 3 });
  });

  it('answers {} and logs an error for what is not a JSON object', () => {
    for (const text of ['{not json', '[1, 2]', 'null']) {
      host.reset({ configJson: text });
      assert.deepEqual(parseConfig(), {});
      assert.equal(host.lines.length, 1, text);
      assert.equal(host.lines[0].level, 'error');
      assert.match(host.lines[0].message, /^invalid configuration/);
    }
  });
});

describe('logLine', () => {
  it('writes one line at the level', () => {
    host.reset();
    logLine('warn', 'store is slow');
    assert.deepEqual(host.lines, [{ level: 'warn', message: 'store is slow' }]);
  });
});

describe('fixedWindowAllows', () => {
  beforeEach(() => host.reset());

  it('allows `limit` events per window and counts under the window number', () => {
    const at = 10_500n;
    host.now = at;
    assert.equal(fixedWindowAllows('k', 2, 1000, at), true);
    assert.equal(fixedWindowAllows('k', 2, 1000, at + 1n), true);
    assert.equal(fixedWindowAllows('k', 2, 1000, at + 2n), false);
    assert.deepEqual([...host.store.keys()], ['k:10']);
    // Created with what was left of the window (500 ms), as the Rust SDK does.
    assert.equal(host.store.get('k:10').expiresAt, 11_000n);
  });

  it('starts again in the next window, aligned on multiples of the window', () => {
    assert.equal(fixedWindowAllows('k', 1, 1000, 10_999n), true);
    assert.equal(fixedWindowAllows('k', 1, 1000, 10_999n), false);
    assert.equal(fixedWindowAllows('k', 1, 1000, 11_000n), true);
    assert.deepEqual([...host.store.keys()].sort(), ['k:10', 'k:11']);
  });

  it('accepts numbers and BigInts alike and treats a zero window as 1 ms', () => {
    assert.equal(fixedWindowAllows('k', 1n, 0, 5), true);
    assert.equal(fixedWindowAllows('k', 1, 0n, 5n), false);
    assert.deepEqual([...host.store.keys()], ['k:5']);
  });

  it('lets the store failure through to its caller', () => {
    host.failure = { tag: 'unavailable' };
    assert.throws(
      () => fixedWindowAllows('k', 1, 1000, 0),
      (e) => e.payload.tag === 'unavailable',
    );
  });
});

describe('the template plugin', () => {
  it('refuses a blocked phrase whatever its case, and counts the refusal', async () => {
    const moderation = await plugin({ blocked: ['Buy Followers'] });
    assert.deepEqual(moderation.moderate(context('u1'), message('Want to BUY FOLLOWERS?')), {
      tag: 'reject',
      val: { code: 'blocked_phrase', reason: 'This message contains a blocked phrase.' },
    });
    assert.deepEqual(moderation.moderate(context('u1'), message('hello')), { tag: 'allow' });
    assert.equal(host.store.get('refused').value, '1');
  });

  it('limits each sender to maxPerWindow messages per window', async () => {
    const moderation = await plugin({ maxPerWindow: 2, windowMs: 60_000 }, 120_000n);
    const verdicts = [1, 2, 3].map(() => moderation.moderate(context('u1'), message('hi')).tag);
    assert.deepEqual(verdicts, ['allow', 'allow', 'reject']);
    assert.equal(moderation.moderate(context('u1'), message('hi')).val.code, 'rate_limited');
    assert.equal(moderation.moderate(context('u2'), message('hi')).tag, 'allow', 'another sender');
    assert.equal(moderation.moderate(context('u1', 180_000n), message('hi')).tag, 'allow', 'next window');
  });

  it('has no limit without maxPerWindow', async () => {
    const moderation = await plugin({ blocked: [] });
    for (let n = 0; n < 50; n += 1) {
      assert.equal(moderation.moderate(context('u1'), message('hi')).tag, 'allow');
    }
    assert.equal(host.store.size, 0);
  });

  it('skips the limit and logs when the store is down', async () => {
    const moderation = await plugin({ blocked: ['spam'], maxPerWindow: 1 });
    host.failure = { tag: 'unavailable' };
    assert.equal(moderation.moderate(context('u1'), message('hi')).tag, 'allow');
    assert.equal(moderation.moderate(context('u1'), message('hi')).tag, 'allow');
    assert.equal(moderation.moderate(context('u1'), message('spam')).val.code, 'blocked_phrase');
    assert.ok(host.lines.every((l) => l.level === 'warn'), JSON.stringify(host.lines));
    assert.match(host.lines[0].message, /rate limit skipped.*unavailable/);
  });

  it('runs on its defaults when the configuration is invalid', async () => {
    const moderation = await plugin({});
    host.configJson = '{oops';
    assert.equal(moderation.moderate(context('u1'), message('anything')).tag, 'allow');
    assert.equal(host.lines[0].level, 'error');
  });
});
