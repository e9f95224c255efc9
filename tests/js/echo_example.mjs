// Drives @stomp/stompjs against the echo example (examples/echo): one client over the raw WebSocket, one over
// SockJS (sockjs-client, one forced transport). Prints one JSON object; every wait is bounded by DEADLINE_MS.
// Usage: node echo_example.mjs <ws url> <sockjs url> <sockjs transport> [token]   (no token: anonymous)
import { Client } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';

const [wsUrl, sockjsUrl, transport, token] = process.argv.slice(2);
const DEADLINE_MS = 20000;
const result = { connected: {}, echoes: {}, chat: {}, receipts: [], errors: [] };
const done = (extra = {}) => {
  process.stdout.write(JSON.stringify({ ...result, ...extra }) + '\n');
  process.exit(0);
};
setTimeout(() => done({ timedOut: true }), DEADLINE_MS).unref();

function makeClient(name, webSocketFactory) {
  const client = new Client({
    webSocketFactory,
    connectHeaders: token ? { passcode: token, host: '127.0.0.1' } : { host: '127.0.0.1' },
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    reconnectDelay: 0,
  });
  client.onStompError = (frame) => result.errors.push(`${name}: ${frame.headers.message}: ${frame.body}`);
  return client;
}

function connect(name, client) {
  return new Promise((resolve, reject) => {
    client.onConnect = (frame) => {
      result.connected[name] = { server: frame.headers.server, user: frame.headers['user-name'] };
      resolve(frame);
    };
    client.onWebSocketClose = (evt) => reject(new Error(`${name} closed (${evt.code}) before CONNECTED`));
    client.activate();
  });
}

function firstMessage(client, destination) {
  return new Promise((resolve) => {
    const sub = client.subscribe(destination, (message) => {
      sub.unsubscribe();
      resolve(message.body);
    }, { receipt: `sub-${destination}` });
  });
}

function sendWithReceipt(client, destination, body, id) {
  return new Promise((resolve) => {
    client.watchForReceipt(id, () => {
      result.receipts.push(id);
      resolve();
    });
    client.publish({ destination, body, headers: { receipt: id } });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  const ws = makeClient('websocket', () => new WebSocket(wsUrl, ['v12.stomp', 'v11.stomp', 'v10.stomp']));
  const sj = makeClient('sockjs', () => new SockJS(sockjsUrl, null, { transports: [transport], timeout: 10000 }));
  await Promise.all([connect('websocket', ws), connect('sockjs', sj)]);
  result.sockjsTransport = transport;

  // /app/echo: the handler in echo/stomp_destinations.py answers on the sender's /user/queue/echo.
  for (const [name, client] of [['websocket', ws], ['sockjs', sj]]) {
    const echoed = firstMessage(client, '/user/queue/echo');
    await sleep(200); // the SUBSCRIBE reaches the server before the SEND (same connection: in order anyway)
    await sendWithReceipt(client, '/app/echo', `echo over ${name}`, `echo-${name}`);
    result.echoes[name] = await echoed;
  }

  // /topic/chat: plain pub/sub across the two transports, both ways.
  const toSockjs = firstMessage(sj, '/topic/chat');
  const toWebsocket = firstMessage(ws, '/topic/chat');
  await sleep(300);
  await sendWithReceipt(ws, '/topic/chat', 'hello from websocket', 'chat-websocket');
  result.chat.sockjs = await toSockjs;
  const again = firstMessage(ws, '/topic/chat');
  await sleep(300);
  await sendWithReceipt(sj, '/topic/chat', 'hello from sockjs', 'chat-sockjs');
  result.chat.websocket = [await toWebsocket, await again];
  await ws.deactivate();
  await sj.deactivate();
  done();
} catch (error) {
  result.errors.push(String(error));
  done();
}
