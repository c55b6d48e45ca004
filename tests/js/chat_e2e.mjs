// End-to-end chat test with the official Socket.IO JavaScript client, the one frontends use.
//
// Usage:
//   LYCEUM_URL=http://127.0.0.1:8080 \
//   LYCEUM_E2E='{"roomId":"...","alice":{"id":"...","name":"...","token":"..."},
//                "bob":{"id":"...","name":"...","token":"..."},
//                "outsider":{"token":"..."}}' \
//   node tests/js/chat_e2e.mjs
//
// `alice` and `bob` are members of the course whose chat room is `roomId`; `outsider` is
// optional (a signed-in user who is not a member). The URL may also be given as the first
// argument. Exits 0 when every check passes; otherwise prints the failing step to stderr
// and exits 1. A global timeout makes sure it never hangs.
//
// Run by tests/tests/js_clients.rs (`cargo test -p lyceum-tests --test js_clients`) after
// `npm ci --prefix tests/js`.

import assert from "node:assert/strict";
import { io } from "socket.io-client";

const GLOBAL_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 5_000;
// How long to watch for an event that must not arrive.
const QUIET_MS = 400;

let step = "startup";
const sockets = [];

function fail(message) {
  process.stderr.write(`chat_e2e FAILED at step "${step}": ${message}\n`);
  for (const socket of sockets) socket.disconnect();
  process.exit(1);
}

const globalTimer = setTimeout(
  () => fail(`global timeout: not finished within ${GLOBAL_TIMEOUT_MS} ms`),
  GLOBAL_TIMEOUT_MS,
);
process.on("unhandledRejection", (error) => fail(error?.stack ?? String(error)));
process.on("uncaughtException", (error) => fail(error?.stack ?? String(error)));

function begin(name) {
  step = name;
}

function ok(name) {
  process.stdout.write(`ok - ${name}\n`);
}

function readInput() {
  const url = process.argv[2] ?? process.env.LYCEUM_URL;
  if (!url) fail("no server URL: pass it as the first argument or set LYCEUM_URL");
  const raw = process.env.LYCEUM_E2E;
  if (!raw) fail("LYCEUM_E2E is not set (JSON with roomId, alice and bob)");
  let input;
  try {
    input = JSON.parse(raw);
  } catch (error) {
    fail(`LYCEUM_E2E is not valid JSON: ${error.message}`);
  }
  for (const key of ["alice", "bob"]) {
    if (!input[key]?.token || !input[key]?.id) fail(`LYCEUM_E2E.${key} needs id and token`);
  }
  if (!input.roomId) fail("LYCEUM_E2E.roomId is missing");
  return { url: url.replace(/\/$/, ""), ...input };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Records every event a socket receives, so a test can wait for one or assert its absence. */
class Recorder {
  constructor(socket) {
    this.events = [];
    this.waiters = [];
    socket.onAny((name, ...args) => {
      const event = { name, data: args[0] };
      this.events.push(event);
      for (const waiter of [...this.waiters]) {
        if (waiter.matches(event)) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve(event.data);
        }
      }
    });
  }

  matching(name, predicate = () => true) {
    return this.events.filter((e) => e.name === name && predicate(e.data));
  }

  /** The first event `name` satisfying `predicate`, received already or within the step timeout. */
  waitFor(name, predicate = () => true, what = name) {
    const seen = this.matching(name, predicate)[0];
    if (seen) return Promise.resolve(seen.data);
    const promise = new Promise((resolve) => {
      this.waiters.push({ matches: (e) => e.name === name && predicate(e.data), resolve });
    });
    return withTimeout(promise, STEP_TIMEOUT_MS, what);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Who a socket shows online in `roomId`, as a frontend keeps it (contract v1.1): the join
 * ack's whole list, then every `chat:presence_diff` applied as set operations.
 */
function presence(joinAck, recorder, roomId) {
  const online = new Map(joinAck.onlineUsers.map((u) => [u.userId, u.name]));
  for (const { data } of recorder.matching("chat:presence_diff", (d) => d?.roomId === roomId)) {
    assert.ok(Array.isArray(data.joins) && Array.isArray(data.leaves), `diff shape: ${JSON.stringify(data)}`);
    for (const u of data.joins) online.set(u.userId, u.name);
    for (const u of data.leaves) online.delete(u.userId);
  }
  return online;
}

/** Waits (up to the step timeout) until the socket's view of the room lists exactly `ids`. */
async function presenceBecomes(joinAck, recorder, roomId, ids, what) {
  const want = [...ids].sort();
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const have = [...presence(joinAck, recorder, roomId).keys()].sort();
    if (JSON.stringify(have) === JSON.stringify(want)) return;
    if (Date.now() > deadline) {
      throw new Error(`${what}: shows ${JSON.stringify(have)} online, expected ${JSON.stringify(want)}`);
    }
    await sleep(20);
  }
}

/** Connects and resolves with the socket, or rejects with the connect_error. */
function connect(url, token, options = {}) {
  const socket = io(url, {
    auth: token === undefined ? undefined : { token },
    reconnection: false,
    forceNew: true,
    timeout: STEP_TIMEOUT_MS,
    ...options,
  });
  sockets.push(socket);
  const recorder = new Recorder(socket);
  const connected = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, recorder }));
    socket.once("connect_error", (error) => reject(error));
  });
  return { socket, connected: withTimeout(connected, STEP_TIMEOUT_MS, "connect") };
}

/** Emits with an acknowledgement, failing the step if none comes. */
async function emitAck(socket, event, payload) {
  try {
    return await socket.timeout(STEP_TIMEOUT_MS).emitWithAck(event, payload);
  } catch (error) {
    throw new Error(`no ack for ${event} within ${STEP_TIMEOUT_MS} ms (${error.message})`);
  }
}

function expectOk(ack, what) {
  assert.equal(typeof ack, "object", `${what}: ack is not an object: ${JSON.stringify(ack)}`);
  assert.equal(ack?.ok, true, `${what}: expected ok:true, got ${JSON.stringify(ack)}`);
  return ack;
}

function expectError(ack, codes, what) {
  assert.equal(ack?.ok, false, `${what}: expected ok:false, got ${JSON.stringify(ack)}`);
  assert.ok(
    codes.includes(ack?.error?.code),
    `${what}: expected error code ${codes.join(" or ")}, got ${JSON.stringify(ack)}`,
  );
}

async function expectRefused(url, token, options, what) {
  const { socket, connected } = connect(url, token, options);
  let error;
  try {
    await connected;
  } catch (e) {
    error = e;
  }
  socket.disconnect();
  assert.ok(error, `${what}: the server accepted the connection`);
  assert.equal(error.message, "UNAUTHORIZED", `${what}: connect_error message`);
}

async function main() {
  const input = readInput();
  const { url, roomId, alice, bob } = input;
  const websocket = { transports: ["websocket"] };

  begin("a bad token gets connect_error UNAUTHORIZED");
  await expectRefused(url, "not-a-valid-token", websocket, "bad token over websocket");
  await expectRefused(url, undefined, websocket, "missing token over websocket");
  ok(step);

  begin("a bad token is refused on the default polling transport too");
  await expectRefused(url, `${alice.token}x`, {}, "tampered token over polling");
  ok(step);

  begin("two members connect over websocket");
  const a = await connect(url, alice.token, websocket).connected;
  const b = await connect(url, bob.token, websocket).connected;
  assert.equal(a.socket.io.engine.transport.name, "websocket");
  ok(step);

  begin("a second tab connects with the default transports and upgrades polling to websocket");
  const tab = connect(url, bob.token);
  const engine = tab.socket.io.engine;
  const firstTransport = engine.transport?.name;
  const upgraded = new Promise((resolve) => engine.once("upgrade", (t) => resolve(t.name)));
  const b2 = await tab.connected;
  assert.equal(firstTransport, "polling", "the default path starts on HTTP long-polling");
  const upgradedTo =
    engine.transport.name === "websocket"
      ? "websocket"
      : await withTimeout(upgraded, STEP_TIMEOUT_MS, "the websocket upgrade");
  assert.equal(upgradedTo, "websocket");
  ok(step);

  begin("members join the course room (chat:join_room with ack)");
  const joinA = expectOk(await emitAck(a.socket, "chat:join_room", { roomId }), "alice joins");
  assert.equal(joinA.roomId, roomId);
  assert.ok(Array.isArray(joinA.onlineUsers), "onlineUsers is a list");
  assert.ok(joinA.onlineUsers.some((u) => u.userId === alice.id), "alice's ack lists alice");
  const joinB = expectOk(await emitAck(b.socket, "chat:join_room", { roomId }), "bob joins");
  const joinB2 = expectOk(await emitAck(b2.socket, "chat:join_room", { roomId }), "bob's tab joins");
  const online = joinB2.onlineUsers.map((u) => u.userId).sort();
  assert.deepEqual(online, [alice.id, bob.id].sort(), "each user online once, however many tabs");
  ok(step);

  begin("the room learns who joined as chat:presence_diff, never as the whole list");
  const bobJoined = await a.recorder.waitFor(
    "chat:presence_diff",
    (d) => d?.roomId === roomId && d.joins?.some((u) => u.userId === bob.id),
    "chat:presence_diff with bob's join",
  );
  assert.deepEqual(
    bobJoined.joins.find((u) => u.userId === bob.id),
    { userId: bob.id, name: bob.name },
    "a join names the user",
  );
  await presenceBecomes(joinA, a.recorder, roomId, [alice.id, bob.id], "alice's view");
  await presenceBecomes(joinB, b.recorder, roomId, [alice.id, bob.id], "bob's view");
  const users = expectOk(await emitAck(a.socket, "chat:online_users", { roomId }), "online users").users;
  assert.deepEqual(users.map((u) => u.userId).sort(), [alice.id, bob.id].sort());
  ok(step);

  if (input.outsider?.token) {
    begin("an outsider may not join the room");
    const o = await connect(url, input.outsider.token, websocket).connected;
    expectError(await emitAck(o.socket, "chat:join_room", { roomId }), ["FORBIDDEN"], "outsider joins");
    o.socket.disconnect();
    ok(step);
  }

  begin("a malformed payload gets VALIDATION_FAILED and the socket stays connected");
  expectError(await emitAck(a.socket, "chat:send_message", "not an object"), ["VALIDATION_FAILED"], "string payload");
  expectError(
    await emitAck(a.socket, "chat:send_message", { roomId, content: "no client id" }),
    ["VALIDATION_FAILED"],
    "missing clientId",
  );
  assert.equal(a.socket.connected, true);
  ok(step);

  begin("typing reaches the others and is not echoed to its sender");
  expectOk(await emitAck(a.socket, "chat:typing", { roomId, isTyping: true }), "alice types");
  const typing = await b.recorder.waitFor("chat:typing", (d) => d?.userId === alice.id);
  assert.equal(typing.roomId, roomId);
  assert.equal(typing.isTyping, true);
  await b2.recorder.waitFor("chat:typing", (d) => d?.userId === alice.id, "chat:typing on bob's other tab");
  await sleep(QUIET_MS);
  assert.equal(a.recorder.matching("chat:typing").length, 0, "typing was echoed to its sender");
  ok(step);

  begin("chat:send_message is acked with the stored message and broadcast to the room");
  const clientId = `js-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const content = "Hello from the official socket.io-client";
  const sent = expectOk(
    await emitAck(a.socket, "chat:send_message", { roomId, content, clientId }),
    "alice sends",
  );
  const message = sent.message;
  assert.equal(message.content, content);
  assert.equal(message.clientId, clientId);
  assert.equal(message.roomId, roomId);
  assert.equal(message.senderId, alice.id);
  assert.equal(message.deletedAt, null);
  const isIt = (d) => d?.id === message.id;
  for (const [who, r] of [["bob", b.recorder], ["bob's polling tab", b2.recorder], ["alice (sender)", a.recorder]]) {
    const delivered = await r.waitFor("chat:new_message", isIt, `chat:new_message to ${who}`);
    assert.deepEqual(delivered, message, `chat:new_message to ${who} is the acked message`);
  }
  ok(step);

  begin("the broadcast message is the one stored in history");
  const history = await withTimeout(
    fetch(`${url}/api/v1/chat/rooms/${roomId}/messages?limit=10`, {
      headers: { authorization: `Bearer ${bob.token}` },
    }).then((r) => r.json()),
    STEP_TIMEOUT_MS,
    "history",
  );
  assert.equal(history.success, true, `history: ${JSON.stringify(history)}`);
  const stored = history.data.items.find(isIt);
  assert.deepEqual(stored, message, "history holds the broadcast message");
  ok(step);

  begin("a resend with the same clientId returns the first message and broadcasts nothing");
  const resent = expectOk(
    await emitAck(a.socket, "chat:send_message", { roomId, content, clientId }),
    "alice resends",
  );
  assert.equal(resent.message.id, message.id);
  await sleep(QUIET_MS);
  for (const [who, r] of [["bob", b.recorder], ["alice", a.recorder]]) {
    assert.equal(r.matching("chat:new_message", isIt).length, 1, `${who} got the message exactly once`);
  }
  ok(step);

  begin("edits are the sender's alone and broadcast as chat:message_updated");
  expectError(
    await emitAck(b.socket, "chat:edit_message", { messageId: message.id, content: "bob was here" }),
    ["FORBIDDEN", "NOT_FOUND"],
    "bob edits alice's message",
  );
  const edited = expectOk(
    await emitAck(a.socket, "chat:edit_message", { messageId: message.id, content: "Hello, edited" }),
    "alice edits",
  ).message;
  assert.equal(edited.id, message.id);
  assert.equal(edited.content, "Hello, edited");
  assert.ok(edited.editedAt, "editedAt is set");
  const updated = await b.recorder.waitFor("chat:message_updated", isIt);
  assert.deepEqual(updated, edited, "chat:message_updated carries the edited message");
  await b2.recorder.waitFor("chat:message_updated", isIt, "chat:message_updated on bob's other tab");
  ok(step);

  begin("deletes are broadcast as chat:message_deleted");
  expectOk(await emitAck(a.socket, "chat:delete_message", { messageId: message.id }), "alice deletes");
  const deleted = await b.recorder.waitFor("chat:message_deleted", (d) => d?.messageId === message.id);
  assert.deepEqual(deleted, { roomId, messageId: message.id });
  await a.recorder.waitFor("chat:message_deleted", (d) => d?.messageId === message.id, "chat:message_deleted to alice");
  ok(step);

  begin("bob stays online until his last tab goes, then the room hears he left");
  expectOk(await emitAck(b2.socket, "chat:leave_room", { roomId }), "bob's tab leaves");
  await sleep(QUIET_MS);
  await presenceBecomes(joinA, a.recorder, roomId, [alice.id, bob.id], "alice's view after one tab left");
  b.socket.disconnect();
  await a.recorder.waitFor(
    "chat:presence_diff",
    (d) => d?.roomId === roomId && d.leaves?.some((u) => u.userId === bob.id),
    "chat:presence_diff with bob's leave",
  );
  await presenceBecomes(joinA, a.recorder, roomId, [alice.id], "alice's view after bob left");
  assert.equal(a.recorder.matching("chat:online_users").length, 0, "the whole list was broadcast (removed in v1.1)");
  for (const socket of sockets) socket.disconnect();
  ok(step);
}

main()
  .then(() => {
    clearTimeout(globalTimer);
    process.stdout.write("chat_e2e: all checks passed\n");
    process.exit(0);
  })
  .catch((error) => fail(error?.stack ?? String(error)));
