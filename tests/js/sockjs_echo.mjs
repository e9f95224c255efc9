// Echo over one forced sockjs-client transport, from a foreign Origin; prints one JSON line with the outcome.
//
// Usage: node tests/js/sockjs_echo.mjs <sockjs base url> <transport> <origin> [message count] [keyed]
// "keyed" connects as the frontend does: a session key from POST <base>/key in the URL's query and
// 32-character session ids (sockjs.binding).
// sockjs-client in Node sends no Origin of its own, so one is added to every HTTP request (XHR,
// EventSource) and to the WebSocket handshake, as a browser on <origin> would send it.
import http from 'node:http';
import SockJS from 'sockjs-client';

const [base, transport, origin, countArg, mode] = process.argv.slice(2);
const count = Number(countArg || 20);
const originalRequest = http.request;
http.request = function requestWithOrigin(options, callback) {
  if (typeof options === 'object' && options !== null && !(options instanceof URL)) {
    options.headers = { ...(options.headers || {}), Origin: origin };
  }
  return originalRequest.call(http, options, callback);
};

// Messages that exercise the escaping rules and, together, exceed the 4 KiB streaming response limit
// of the test services, so streaming transports must reconnect mid-conversation.
const messages = [];
for (let i = 0; i < count; i += 1) {
  messages.push(`${i} 안녕 "quoted" \\ \u2028 \u0000 ${'x'.repeat(300)}`);
}
const received = [];
const result = { transport: null, received: 0, inOrder: false, closeCode: null, closeReason: null, error: null };

function finish(error) {
  if (error) result.error = String(error);
  console.log(JSON.stringify(result));
  process.exit(result.error ? 1 : 0);
}

const watchdog = setTimeout(() => finish(`timed out after ${received.length} echoes`), 30000);
let url = base;
if (mode === 'keyed') {
  const response = await fetch(`${base}/key`, { method: 'POST', headers: { Origin: origin } });
  const { key } = await response.json();
  url = `${base}?key=${encodeURIComponent(key)}`;
}
const sock = new SockJS(url, null, {
  transports: [transport],
  transportOptions: { websocket: { headers: { Origin: origin } } },
  timeout: 10000,
  sessionId: mode === 'keyed' ? 32 : 8,
});
sock.onopen = () => {
  result.transport = sock.transport;
  // A burst first (batching), then one at a time, so that streaming responses hit the limit
  // and reconnect between messages.
  for (const message of messages.slice(0, 5)) sock.send(message);
};
sock.onmessage = (event) => {
  received.push(event.data);
  const next = received.length + 4; // the burst had 0..4 in flight; each echo releases one more
  if (next < messages.length) sock.send(messages[next]);
  if (received.length === messages.length) {
    result.received = received.length;
    result.inOrder = received.every((text, i) => text === messages[i]);
    sock.close(1000, 'done');
  }
};
sock.onclose = (event) => {
  clearTimeout(watchdog);
  result.received = received.length;
  result.closeCode = event.code;
  result.closeReason = event.reason;
  finish(received.length === messages.length ? null : `closed after ${received.length} echoes`);
};
