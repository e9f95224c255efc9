// A scripted chat user over @stomp/stompjs: raw WebSocket (`ws`) or SockJS (`sockjs-client`), driven by a
// JSON plan; prints one JSON object with everything it saw. Every wait is bounded (plan.deadline_ms).
// Usage: node chat_client.mjs '<plan json>'
//   plan = {url, token, sockjs?: bool, transports?: [..], origin?, subscribe: [{destination, headers?}],
//           send: [{destination, body, headers?}], expect: {destination: count}, linger_ms?, deadline_ms?}
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import SockJS from 'sockjs-client';
import http from 'node:http';

const plan = JSON.parse(process.argv[2]);
if (plan.origin) {
  // sockjs-client in Node sends no Origin; add one to every HTTP request, as a browser on that origin would.
  const originalRequest = http.request;
  http.request = function requestWithOrigin(options, callback) {
    if (typeof options === 'object' && options !== null && !(options instanceof URL)) {
      options.headers = { ...(options.headers || {}), Origin: plan.origin };
    }
    return originalRequest.call(http, options, callback);
  };
}
const out = { connected: false, received: {}, receipts: [], errors: [], closed: null };
const finish = (extra = {}) => {
  process.stdout.write(JSON.stringify({ ...out, ...extra }) + '\n');
  process.exit(0);
};
setTimeout(() => finish({ timedOut: true }), plan.deadline_ms ?? 20000).unref();

const factory = plan.sockjs
  ? () => new SockJS(plan.url, null, {
    transports: plan.transports,
    transportOptions: plan.origin ? { websocket: { headers: { Origin: plan.origin } } } : {},
    timeout: 10000,
  })
  : () => new WebSocket(plan.url, ['v12.stomp'], plan.origin ? { origin: plan.origin } : {});
const client = new Client({
  webSocketFactory: factory,
  connectHeaders: plan.token ? { Authorization: `Bearer ${plan.token}` } : {},
  reconnectDelay: 0,
  heartbeatIncoming: 0,
  heartbeatOutgoing: 0,
  debug: () => {},
});

const expected = plan.expect ?? {};
const satisfied = () => Object.entries(expected).every(([d, n]) => (out.received[d]?.length ?? 0) >= n);
let lingering = false;
function check() {
  if (!lingering && satisfied() && out.pendingReceipts === 0) {
    lingering = true;
    setTimeout(() => { client.deactivate().finally(() => finish()); }, plan.linger_ms ?? 300);
  }
}

client.onStompError = (frame) => { out.errors.push({ message: frame.headers.message, code: frame.headers.code, body: frame.body }); };
client.onWebSocketClose = (evt) => {
  if (lingering) return; // our own deactivate()
  out.closed = evt.code ?? true; // closed by the server
  finish();
};
client.onConnect = async (frame) => {
  out.connected = true;
  out.user = frame.headers['user-name'];
  out.transport = client.webSocket && client.webSocket.transport;
  const subs = plan.subscribe ?? [];
  await Promise.all(subs.map((s, i) => new Promise((resolve) => {
    const id = `sub-${i}`;
    client.watchForReceipt(id, resolve);
    client.subscribe(s.destination, (m) => {
      const list = (out.received[s.destination] ??= []);
      let body = m.body;
      try { body = JSON.parse(m.body); } catch (e) { /* text */ }
      list.push({ body, headers: Object.fromEntries(Object.entries(m.headers).filter(([k]) => !['destination', 'subscription', 'message-id', 'content-length'].includes(k))) });
      check();
    }, { ...(s.headers ?? {}), receipt: id });
  })));
  if (plan.ready_file) (await import('node:fs')).writeFileSync(plan.ready_file, 'ready');
  if (plan.wait_for_file) {
    const fs = await import('node:fs');
    while (!fs.existsSync(plan.wait_for_file)) await new Promise((r) => setTimeout(r, 20));
  }
  const sends = plan.send ?? [];
  out.pendingReceipts = sends.filter((s) => s.receipt !== false).length;
  for (const [i, s] of sends.entries()) {
    const headers = { 'content-type': 'application/json', ...(s.headers ?? {}) };
    if (s.receipt !== false) {
      const id = `send-${i}`;
      headers.receipt = id;
      client.watchForReceipt(id, () => { out.receipts.push(id); out.pendingReceipts -= 1; check(); });
    }
    client.publish({ destination: s.destination, body: typeof s.body === 'string' ? s.body : JSON.stringify(s.body), headers });
    if (s.pause_ms) await new Promise((r) => setTimeout(r, s.pause_ms));
  }
  if (out.pendingReceipts === 0) out.pendingReceipts = 0;
  check();
};
out.pendingReceipts = 0;
client.activate();
