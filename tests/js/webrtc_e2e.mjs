// A real WebRTC connection negotiated through Lyceum's signaling: two pages of a headless
// Chromium, each with the official Socket.IO client, join a live session; one offers, the
// other answers, both trickle ICE candidates through the server, the peer connection reaches
// "connected" and a data channel message crosses.
//
// Run by tests/tests/js_clients.rs, which starts the server and passes LYCEUM_URL,
// LYCEUM_E2E (JSON: sessionId, alice/bob tokens) and LYCEUM_CHROMIUM (the browser binary).

import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const url = process.env.LYCEUM_URL;
const e2e = JSON.parse(process.env.LYCEUM_E2E);
const browserPath = process.env.LYCEUM_CHROMIUM;
// The browser build the package ships (not in its "exports", so found by path).
const clientScript = fileURLToPath(
  new URL("./node_modules/socket.io-client/dist/socket.io.min.js", import.meta.url),
);

const deadline = setTimeout(() => {
  console.error("webrtc_e2e: timed out");
  process.exit(1);
}, 45_000);

function step(text) {
  console.log(`webrtc_e2e: ${text}`);
}

// Runs in each page: connect, join, and either offer (to the first peer already there) or
// answer, relaying every signal through the server. Resolves with what the page saw.
async function peer({ token, sessionId, role, message }) {
  const log = [];
  const socket = io({ auth: { token }, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    socket.on("connect", resolve);
    socket.on("connect_error", (e) => reject(new Error(`connect_error ${e.message}`)));
  });
  const emit = (event, payload) =>
    new Promise((resolve, reject) =>
      socket.emit(event, payload, (ack) =>
        ack && ack.ok ? resolve(ack) : reject(new Error(`${event}: ${JSON.stringify(ack)}`)),
      ),
    );

  const pc = new RTCPeerConnection({ iceServers: [] });
  let remote = null;
  const pending = [];
  pc.onicecandidate = (event) => {
    if (event.candidate && remote) {
      emit("webrtc:ice_candidate", { sessionId, to: remote, candidate: event.candidate.toJSON() });
      log.push("sent candidate");
    } else if (event.candidate) {
      pending.push(event.candidate.toJSON());
    }
  };
  const flush = () => {
    for (const candidate of pending.splice(0)) {
      emit("webrtc:ice_candidate", { sessionId, to: remote, candidate });
      log.push("sent candidate");
    }
  };
  // Socket.IO handles each event on its own task, so a candidate may overtake the offer it
  // belongs to; like any WebRTC client, hold candidates until the remote description is set.
  const early = [];
  let described = false;
  // ICE may connect on peer-reflexive candidates before the peer's trickled ones arrive, so
  // each side waits for one relayed candidate before it reports: that is what the test checks.
  let candidateApplied;
  const gotCandidate = new Promise((resolve) => (candidateApplied = resolve));
  const describe = async (sdp) => {
    await pc.setRemoteDescription(sdp);
    described = true;
    for (const candidate of early.splice(0)) {
      await pc.addIceCandidate(candidate);
      log.push("got candidate");
      candidateApplied();
    }
  };
  socket.on("webrtc:ice_candidate_received", async (signal) => {
    if (remote && signal.from !== remote) {
      log.push(`candidate from a stranger ${signal.from}`);
      return;
    }
    if (!described) {
      early.push(signal.candidate);
      return;
    }
    await pc.addIceCandidate(signal.candidate);
    log.push("got candidate");
    candidateApplied();
  });
  const connected = new Promise((resolve, reject) => {
    pc.onconnectionstatechange = () => {
      log.push(`state ${pc.connectionState}`);
      if (pc.connectionState === "connected") resolve();
      if (pc.connectionState === "failed") reject(new Error("peer connection failed"));
    };
  });

  const joined = await emit("webrtc:join_session", { sessionId });
  log.push(`joined with ${joined.peers.length} peers`);

  if (role === "offerer") {
    // Wait until the answerer is in the call, then offer to it.
    remote = joined.peers[0]?.socketId;
    if (!remote) {
      remote = await new Promise((resolve) =>
        socket.on("webrtc:user_joined", (p) => resolve(p.socketId)),
      );
    }
    const channel = pc.createDataChannel("lyceum");
    const opened = new Promise((resolve) => (channel.onopen = resolve));
    socket.on("webrtc:answer_received", async (signal) => {
      await describe(signal.sdp);
      log.push("got answer");
    });
    await pc.setLocalDescription(await pc.createOffer());
    await emit("webrtc:offer", { sessionId, to: remote, sdp: pc.localDescription.toJSON() });
    log.push("sent offer");
    flush();
    await connected;
    await opened;
    channel.send(message);
    log.push("sent message");
    await gotCandidate;
    return { log, state: pc.connectionState };
  }

  const received = new Promise((resolve) => {
    pc.ondatachannel = (event) => {
      event.channel.onmessage = (m) => resolve(m.data);
    };
  });
  await new Promise((resolve, reject) => {
    socket.on("webrtc:offer_received", async (signal) => {
      try {
        remote = signal.from;
        log.push(`offer from ${signal.userId}`);
        await describe(signal.sdp);
        await pc.setLocalDescription(await pc.createAnswer());
        await emit("webrtc:answer", { sessionId, to: remote, sdp: pc.localDescription.toJSON() });
        log.push("sent answer");
        flush();
        resolve();
      } catch (e) {
        reject(e);
      }
    });
  });
  await connected;
  const text = await received;
  log.push("got message");
  await gotCandidate;
  return { log, state: pc.connectionState, received: text };
}

const browser = await chromium.launch({
  executablePath: browserPath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    // Host candidates as plain addresses: there is no mDNS responder to resolve `.local` names.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
try {
  const pages = [];
  for (let i = 0; i < 2; i++) {
    // The page only lends the client the server's origin: /health is served with
    // `default-src 'none'`, like every answer that is not meant to run script, which would
    // block the injected client and its socket.
    const page = await browser.newPage({ bypassCSP: true });
    page.on("console", (m) => console.log(`page ${i}: ${m.text()}`));
    page.on("pageerror", (e) => console.log(`page ${i} error: ${e.message}`));
    // Same origin as the server, so the Socket.IO client needs no CORS, and the gateway
    // admits the handshake's Origin as the server's own.
    await page.goto(`${url}/health`);
    await page.addScriptTag({ path: clientScript });
    pages.push(page);
  }
  step("two pages loaded");
  const message = `hello through lyceum ${Date.now()}`;
  const answerer = pages[1].evaluate(peer, {
    token: e2e.bob.token,
    sessionId: e2e.sessionId,
    role: "answerer",
    message,
  });
  // Bob is in the call before Alice offers, so the offerer finds him in its join ack.
  await new Promise((r) => setTimeout(r, 500));
  const offerer = pages[0].evaluate(peer, {
    token: e2e.alice.token,
    sessionId: e2e.sessionId,
    role: "offerer",
    message,
  });
  const [a, b] = await Promise.all([offerer, answerer]);
  step(`offerer: ${a.log.join(", ")}`);
  step(`answerer: ${b.log.join(", ")}`);
  if (a.state !== "connected" || b.state !== "connected") {
    throw new Error(`not connected: ${a.state} / ${b.state}`);
  }
  if (b.received !== message) {
    throw new Error(`the data channel carried ${JSON.stringify(b.received)}`);
  }
  if (
    !a.log.includes("sent candidate") ||
    !b.log.includes("got candidate") ||
    !b.log.includes("sent candidate") ||
    !a.log.includes("got candidate")
  ) {
    throw new Error("no ICE candidate went through the server");
  }
  step("connected; the data channel message crossed");
  step("all checks passed");
} finally {
  await browser.close();
  clearTimeout(deadline);
}
