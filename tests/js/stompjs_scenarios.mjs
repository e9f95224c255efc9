// Drives @stomp/stompjs (with `ws` as the WebSocket) against a live server; prints one JSON object.
// Usage: node stompjs_scenarios.mjs <scenario> <ws-url>   (tokens in env TOKEN_A, TOKEN_B)
// Every wait is bounded: the whole script gives up after DEADLINE_MS.
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const [scenario, url] = process.argv.slice(2);
const DEADLINE_MS = 20000;
const result = { scenario, steps: [], errors: [] };
const done = (extra = {}) => {
  process.stdout.write(JSON.stringify({ ...result, ...extra }) + '\n');
  process.exit(0);
};
setTimeout(() => done({ timedOut: true }), DEADLINE_MS).unref();

function makeClient(token, { heartbeat = 0, headers, log } = {}) {
  return new Client({
    webSocketFactory: () => new WebSocket(url, ['v10.stomp', 'v11.stomp', 'v12.stomp']),
    connectHeaders: headers ?? { Authorization: `Bearer ${token}`, host: '127.0.0.1' },
    heartbeatIncoming: heartbeat,
    heartbeatOutgoing: heartbeat,
    reconnectDelay: 0,
    debug: (line) => log && log.push(line),
  });
}

function connect(client) {
  return new Promise((resolve, reject) => {
    client.onConnect = (frame) => resolve(frame);
    client.onStompError = (frame) => reject(Object.assign(new Error('stomp error'), { frame }));
    client.onWebSocketClose = (evt) => reject(Object.assign(new Error('closed'), { code: evt.code }));
    client.activate();
  });
}

function receipt(client, id) {
  return new Promise((resolve) => client.watchForReceipt(id, (frame) => resolve(frame.headers['receipt-id'])));
}

function collector() {
  const messages = [];
  let waiter = null;
  const onMessage = (message) => {
    messages.push(message);
    if (waiter && messages.length >= waiter.n) waiter.resolve(messages.slice());
  };
  const waitFor = (n) => new Promise((resolve) => {
    if (messages.length >= n) resolve(messages.slice());
    else waiter = { n, resolve };
  });
  return { messages, onMessage, waitFor };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function fullProtocol() {
  const log = [];
  const a = makeClient(process.env.TOKEN_A, { heartbeat: 200, log });
  const b = makeClient(process.env.TOKEN_B);
  const connected = await connect(a);
  await connect(b);
  result.connected = connected.headers;

  // Subscribe (auto) with a receipt, then SEND from the other client with a receipt.
  const auto = collector();
  const subReceipt = receipt(a, 'sub-1');
  a.subscribe('/topic/js', auto.onMessage, { receipt: 'sub-1' });
  result.steps.push(['subscribe-receipt', await subReceipt]);
  const sendReceipt = receipt(b, 'send-1');
  b.publish({ destination: '/topic/js', body: 'hello from stompjs', headers: { receipt: 'send-1', 'x-custom': 'yes' } });
  result.steps.push(['send-receipt', await sendReceipt]);
  const [first] = await auto.waitFor(1);
  result.message = { body: first.body, headers: first.headers };

  // Binary body with NUL bytes (content-length framing).
  b.publish({ destination: '/topic/js', binaryBody: new Uint8Array([104, 0, 105]), headers: { 'content-type': 'application/octet-stream' } });
  const [, second] = await auto.waitFor(2);
  result.binary = Array.from(second.binaryBody);

  // client-individual acks: ACK one, NACK another, with receipts.
  const acked = collector();
  const ackSub = receipt(a, 'sub-2');
  a.subscribe('/topic/js-acks', acked.onMessage, { ack: 'client-individual', receipt: 'sub-2' });
  await ackSub;
  b.publish({ destination: '/topic/js-acks', body: 'one' });
  b.publish({ destination: '/topic/js-acks', body: 'two' });
  const [m1, m2] = await acked.waitFor(2);
  const ackReceipt = receipt(a, 'ack-1');
  m1.ack({ receipt: 'ack-1' });
  result.steps.push(['ack-receipt', await ackReceipt]);
  const nackReceipt = receipt(a, 'nack-1');
  m2.nack({ receipt: 'nack-1' });
  result.steps.push(['nack-receipt', await nackReceipt]);
  result.ackHeader = m1.headers.ack;

  // Transactions: aborted SENDs vanish, committed ones arrive in order.
  const aborted = b.begin('tx-abort');
  b.publish({ destination: '/topic/js', body: 'aborted', headers: { transaction: aborted.id } });
  aborted.abort();
  const committed = b.begin('tx-commit');
  b.publish({ destination: '/topic/js', body: 'tx-1', headers: { transaction: committed.id } });
  b.publish({ destination: '/topic/js', body: 'tx-2', headers: { transaction: committed.id } });
  const commitReceipt = receipt(b, 'commit-1');
  // stompjs' commit() takes no headers: a SEND with a receipt right after it proves the COMMIT was handled.
  committed.commit();
  b.publish({ destination: '/topic/js', body: 'after-commit', headers: { receipt: 'commit-1' } });
  await commitReceipt;
  const all = await auto.waitFor(5);
  result.afterTransactions = all.slice(2).map((m) => m.body);

  // Unsubscribe, then nothing more arrives on that subscription.
  const sub3 = a.subscribe('/topic/js-unsub', () => result.errors.push('message after unsubscribe'));
  sub3.unsubscribe({ receipt: 'unsub-1' });
  await receipt(a, 'unsub-1');
  b.publish({ destination: '/topic/js-unsub', body: 'nobody' });

  // Heart-beats both ways for a while (server sends every 200 ms; we send every 200 ms).
  await sleep(900);
  result.pongs = log.filter((l) => l.includes('<<< PONG')).length;
  result.pings = log.filter((l) => l.includes('>>> PING')).length;
  result.stillConnected = a.connected;

  // DISCONNECT (stompjs sends it with a receipt and waits for it), then the socket closes.
  const closed = new Promise((resolve) => { a.onWebSocketClose = (evt) => resolve(evt.code); });
  await a.deactivate();
  result.closeCode = await closed;
  result.disconnectReceipt = log.some((l) => l.includes('<<< RECEIPT'));
  await b.deactivate();
}

async function badToken() {
  const client = makeClient('not-a-jwt');
  const closed = new Promise((resolve) => { client.onWebSocketClose = (evt) => resolve(evt.code); });
  try {
    await new Promise((resolve, reject) => {
      client.onConnect = () => reject(new Error('connected with a bad token'));
      client.onStompError = (frame) => { result.error = { headers: frame.headers, body: frame.body }; resolve(); };
      client.activate();
    });
  } catch (e) {
    result.errors.push(String(e));
  }
  result.closeCode = await closed;
  await client.deactivate();
}

async function noToken() {
  const client = makeClient(null, { headers: {} });
  const closed = new Promise((resolve) => { client.onWebSocketClose = (evt) => resolve(evt.code); });
  await new Promise((resolve) => {
    client.onStompError = (frame) => { result.error = { headers: frame.headers, body: frame.body }; resolve(); };
    client.activate();
  });
  result.closeCode = await closed;
  await client.deactivate();
}

async function subscribeAndWait() {
  // Subscribe to $DESTINATION, print "ready" on stderr after the receipt, collect $COUNT messages.
  const client = makeClient(process.env.TOKEN_A);
  await connect(client);
  const got = collector();
  const ready = receipt(client, 'ready');
  client.subscribe(process.env.DESTINATION, got.onMessage, { receipt: 'ready' });
  await ready;
  process.stderr.write('ready\n');
  const messages = await got.waitFor(Number(process.env.COUNT || 1));
  result.bodies = messages.map((m) => m.body);
  await client.deactivate();
}

const scenarios = { full: fullProtocol, 'bad-token': badToken, 'no-token': noToken, subscribe: subscribeAndWait };
try {
  await scenarios[scenario]();
} catch (e) {
  result.errors.push(e.frame ? { headers: e.frame.headers, body: e.frame.body } : String(e.stack || e));
}
done();
