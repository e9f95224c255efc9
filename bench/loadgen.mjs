#!/usr/bin/env node
// The project's STOMP 1.2 over WebSocket load generator (loopback only, every loop bounded).
//
// Modes:
//   fanout  --subs N --pubs P       N subscriber connections on --sub-dest, P publisher connections
//                                    SENDing to --pub-dest (default: the same destination).
//   rooms   --rooms K --room-size S  K*S connections; each subscribes to its room and publishes into it
//                                    ({room} in the destinations is the room number).
//   idle    --idle N                 N connections that CONNECT, SUBSCRIBE once and only heart-beat;
//                                    reports the server's RSS per connection.
// Rates: --rate R1,R2,... messages/s over all publishers (a sweep on the same connections), or 0 for
// "as fast as possible" with at most --window messages per publisher not yet seen by its whole audience.
// Every message body starts with the marker "#B|step|publisher|seq|send-ms|", found anywhere in a
// MESSAGE body (so JSON-wrapped chat messages are measured too); latency = receive - send, same clock.
// Credentials: --tokens FILE (one JWT per line, connection i uses line i) or --login/--passcode.
// Chat, as the frontend sends: --json-send wraps the text as {"body", "client_id"} (application/json),
// --client-id gives every SEND a unique client id, --receipts asks a RECEIPT for every SEND (counted).
// One JSON document on stdout; progress on stderr. Run by bench/run.py; `node bench/loadgen.mjs --help`.

import WebSocket from 'ws';
import { performance } from 'node:perf_hooks';
import { readdirSync, readFileSync } from 'node:fs';

const OPTIONS = {
  url: 'ws://127.0.0.1:8000/ws/websocket', mode: 'fanout',
  subs: 100, pubs: 1, rooms: 0, 'room-size': 2, idle: 0, 'idle-steps': 4, hold: 5,
  'sub-dest': '/topic/bench', 'pub-dest': '', rate: '0', window: 20, size: 100,
  duration: 5, warmup: 1, drain: 5, pause: 1, 'stop-p99': 0, 'stop-on-loss': false, retries: 1,
  tokens: '', login: '', passcode: '', heartbeat: '10000,10000', concurrency: 50,
  'connect-timeout': 20000, 'server-pid': '', 'max-time': 600, label: '', 'content-type': 'text/plain',
  'json-send': false, 'client-id': false, receipts: false,
};

function parseArgs(argv) {
  const opts = { ...OPTIONS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(`usage: node bench/loadgen.mjs [--${Object.keys(OPTIONS).join(' X] [--')} X]`);
      process.exit(0);
    }
    const name = arg.replace(/^--/, '');
    if (!(name in OPTIONS)) throw new Error(`unknown option ${arg}`);
    if (typeof OPTIONS[name] === 'boolean') { opts[name] = true; continue; }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    opts[name] = typeof OPTIONS[name] === 'number' ? Number(value) : value;
  }
  if (!opts['pub-dest']) opts['pub-dest'] = opts['sub-dest'];
  return opts;
}

const A = parseArgs(process.argv.slice(2));
const URLS = A.url.split(',');
for (const u of URLS) {
  const host = new URL(u).hostname;
  if (host !== '127.0.0.1' && host !== 'localhost') { console.error(`refusing ${host}: loopback only`); process.exit(2); }
}
const TOKENS = A.tokens ? readFileSync(A.tokens, 'utf8').split('\n').filter(Boolean) : [];
const PIDS = A['server-pid'].split(',').filter(Boolean).map(Number);
const now = () => performance.now();
const wall = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (x, d = 3) => (x == null || !Number.isFinite(x) ? x : Math.round(x * 10 ** d) / 10 ** d);
const t0Process = now();
const RUN_ID = Math.random().toString(36).slice(2, 8);
const totals = { sent: 0, receipts: 0 };
const progress = (...m) => console.error(`[loadgen ${A.label} ${((now() - t0Process) / 1000).toFixed(1)}s]`, ...m);

// -- /proc sampling: server CPU seconds and RSS, our own CPU --------------------------------------------------
function procOne(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return { cpu: (Number(fields[11]) + Number(fields[12])) / 100, rss_kb: rss ? Number(rss[1]) : null };
  } catch { return { cpu: null, rss_kb: null }; }
}
// A server process and every process below it (a server's own helper processes, e.g. its chat writer
// process with CHAT_WRITER_PROCESS=1, do its work too).
function descendants(pid) {
  const found = [];
  const stack = [pid];
  while (stack.length && found.length < 64) {
    const p = stack.pop();
    found.push(p);
    let tasks = [];
    try { tasks = readdirSync(`/proc/${p}/task`); } catch { continue; }
    for (const t of tasks) {
      try {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'latin1').split(' ')) if (c) stack.push(Number(c));
      } catch { /* the task ended */ }
    }
  }
  return found;
}
function proc(pid) {
  const parts = descendants(pid).map(procOne);
  if (parts[0].cpu === null) return parts[0];
  return { cpu: parts.reduce((sum, p) => sum + (p.cpu ?? 0), 0),
    rss_kb: parts.reduce((sum, p) => sum + (p.rss_kb ?? 0), 0) };
}
function sample() {
  const servers = PIDS.map(proc);
  return { t: now(), client: process.cpuUsage(), servers };
}
function usage(a, b) {
  const seconds = (b.t - a.t) / 1000;
  const client = (b.client.user - a.client.user + b.client.system - a.client.system) / 1e6;
  const server = a.servers.reduce((sum, s, i) => sum + ((b.servers[i].cpu ?? 0) - (s.cpu ?? 0)), 0);
  return { seconds: round(seconds), client_cpu_s: round(client), client_cores: round(client / seconds),
    server_cpu_s: round(server), server_cores: round(server / seconds),
    server_rss_kb: b.servers.reduce((sum, s) => sum + (s.rss_kb ?? 0), 0) };
}

// -- latency histogram: 1 % logarithmic buckets from 1 µs ----------------------------------------------------
class Histogram {
  constructor() { this.buckets = new Float64Array(2400); this.n = 0; this.max = 0; }
  add(ms) {
    const us = Math.max(ms * 1000, 1);
    this.buckets[Math.min(2399, Math.ceil(Math.log(us) / Math.log(1.01)))]++;
    this.n++; if (ms > this.max) this.max = ms;
  }
  quantile(q) {
    if (!this.n) return null;
    const target = Math.ceil(q * this.n);
    for (let i = 0, seen = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i];
      if (seen >= target) return round(Math.min(1.01 ** i / 1000, this.max));
    }
    return round(this.max);
  }
  summary() { return { n: this.n, p50: this.quantile(0.5), p90: this.quantile(0.9), p99: this.quantile(0.99), max: round(this.max) }; }
}

// -- STOMP over WebSocket ----------------------------------------------------------------------------------
const counters = { errors: 0, firstError: '', closed: 0, other: 0, late: 0, firstOther: '' };
let currentStep = null; // {tag, onMessage}
const connections = [];

function frame(command, headers, body = '') {
  let text = `${command}\n`;
  for (const [k, v] of Object.entries(headers)) text += `${k}:${v}\n`;
  return `${text}\n${body}\0`;
}
function headersOf(text) {
  const out = {};
  for (const line of text.split('\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !(line.slice(0, colon) in out)) out[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return out;
}

class Connection {
  constructor(index) {
    this.index = index; this.ws = null; this.connected = false; this.receipts = new Map();
    this.lastSent = 0; this.beatMs = 0; this.seen = null; this.received = 0;
  }
  open() {
    const url = URLS[this.index % URLS.length];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error('connect timeout')), A['connect-timeout']);
      const done = (error) => {
        clearTimeout(timer);
        if (error) { try { this.ws.terminate(); } catch {} reject(error); } else resolve(this);
      };
      const ws = this.ws = new WebSocket(url, ['v12.stomp'], { perMessageDeflate: false });
      ws.on('open', () => {
        const headers = { 'accept-version': '1.2', host: '/', 'heart-beat': A.heartbeat };
        if (TOKENS.length) headers.Authorization = `Bearer ${TOKENS[this.index % TOKENS.length]}`;
        if (A.login) { headers.login = A.login; headers.passcode = A.passcode; }
        this.send(frame('CONNECT', headers));
      });
      ws.on('error', (error) => { if (!this.connected) done(error); });
      ws.on('close', () => {
        if (this.connected) counters.closed++;
        this.connected = false;
        done(new Error('closed before CONNECTED'));
      });
      ws.on('message', (data) => {
        const text = data.toString('latin1');
        if (this.connected) { this.onData(text); return; }
        const head = text.replace(/^[\r\n]+/, '');
        if (head.startsWith('CONNECTED')) {
          const [, serverWants] = (headersOf(head.split('\n\n')[0])['heart-beat'] || '0,0').split(',').map(Number);
          const [weSend] = A.heartbeat.split(',').map(Number);
          this.beatMs = weSend && serverWants ? Math.max(weSend, serverWants) : 0;
          this.connected = true;
          done();
          const rest = head.indexOf('\0');
          if (rest >= 0 && rest + 1 < head.length) this.onData(head.slice(rest + 1));
        } else if (head.startsWith('ERROR')) {
          noteError(head);
          done(new Error(`ERROR: ${headersOf(head.split('\n\n')[0]).message}`));
        }
      });
    });
  }
  send(text) { this.lastSent = now(); this.ws.send(text); }
  onData(text) {
    let start = 0;
    while (start < text.length) {
      while (start < text.length && (text.charCodeAt(start) === 10 || text.charCodeAt(start) === 13)) start++;
      if (start >= text.length) return;
      let end = text.indexOf('\0', start);
      if (end < 0) end = text.length;
      if (text.startsWith('MESSAGE', start)) this.onMessage(text, start, end);
      else if (text.startsWith('RECEIPT', start)) {
        const id = headersOf(text.slice(start, end).split('\n\n')[0])['receipt-id'];
        const resolve = this.receipts.get(id);
        if (resolve) { this.receipts.delete(id); resolve(); } else if (id && id.startsWith('s-')) {
          totals.receipts++;
          if (currentStep && id.startsWith(`s-${currentStep.tag}-`)) currentStep.receipts++;
        }
      } else if (text.startsWith('ERROR', start)) noteError(text.slice(start, end));
      start = end + 1;
    }
  }
  onMessage(text, start, end) {
    const received = wall();
    const bodyStart = text.indexOf('\n\n', start);
    const marker = text.indexOf('#B|', bodyStart);
    if (marker < 0 || marker > end) {
      counters.other++;
      if (!counters.firstOther) counters.firstOther = text.slice(start, Math.min(end, start + 400));
      return;
    }
    const p1 = text.indexOf('|', marker + 3), p2 = text.indexOf('|', p1 + 1);
    const p3 = text.indexOf('|', p2 + 1), p4 = text.indexOf('|', p3 + 1);
    const tag = +text.slice(marker + 3, p1);
    if (!currentStep || tag !== currentStep.tag) { counters.late++; return; }
    currentStep.onMessage(this, +text.slice(p1 + 1, p2), +text.slice(p2 + 1, p3), received - +text.slice(p3 + 1, p4));
  }
  request(command, headers) {
    const id = `r-${this.index}-${this.receipts.size}-${Math.random().toString(36).slice(2, 8)}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.receipts.delete(id); reject(new Error(`no RECEIPT for ${command}`)); },
        A['connect-timeout']);
      this.receipts.set(id, () => { clearTimeout(timer); resolve(); });
      this.send(frame(command, { ...headers, receipt: id }));
    });
  }
  close() {
    if (this.connected) { try { this.ws.send(frame('DISCONNECT', {})); } catch {} }
    this.connected = false;
    try { this.ws.close(1000); } catch {}
  }
}
function noteError(text) {
  counters.errors++;
  if (!counters.firstError) { counters.firstError = text.slice(0, 300).replace(/\0/g, ''); progress('STOMP ERROR', counters.firstError); }
}

// One timer heart-beats every connection that has been quiet (cheap for thousands).
const beats = setInterval(() => {
  const t = now();
  for (const c of connections) {
    if (c.connected && c.beatMs && t - c.lastSent >= c.beatMs * 0.8) { c.lastSent = t; try { c.ws.send('\n'); } catch {} }
  }
}, 500);

async function openAll(count, first, setup) {
  let next = 0, ok = 0;
  const errors = {};
  const worker = async () => {
    while (next < count) {
      const c = new Connection(first + next++);
      connections.push(c);
      try { await c.open(); await setup(c); ok++; } catch (error) {
        const key = String(error.message || error).slice(0, 120);
        errors[key] = (errors[key] || 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(A.concurrency, count) }, worker));
  return { ok, failed: count - ok, errors };
}
const destination = (template, room) => template.replaceAll('{room}', String(room));

// -- one measured step ---------------------------------------------------------------------------------------
let stepCounter = 0;
async function runStep(rate, seconds, publishers, subscribers, warmup = false) {
  const tag = warmup ? 900000 + stepCounter++ : stepCounter++;
  const histogram = new Histogram();
  let received = 0, outOfOrder = 0, lastReceived = 0;
  for (const s of subscribers) { s.seen = new Int32Array(publishers.length).fill(-1); s.received = 0; }
  for (const p of publishers) { p.seq = 0; }
  const windowed = !(rate > 0);
  let pump = () => {};
  currentStep = {
    tag, receipts: 0,
    onMessage(sub, publisher, seq, latency) {
      received++; sub.received++; lastReceived = now();
      histogram.add(latency);
      if (seq === sub.seen[publisher] + 1) sub.seen[publisher] = seq;
      else { outOfOrder++; if (seq > sub.seen[publisher]) sub.seen[publisher] = seq; }
      if (windowed) pump();
    },
  };
  const padding = 'x'.repeat(A.size);
  const sendOne = (p) => {
    const head = `#B|${tag}|${p.number}|${p.seq}|${wall().toFixed(3)}|`;
    let body = head + padding.slice(0, Math.max(0, A.size - head.length));
    let headers = `destination:${p.dest}\n`;
    const clientId = A['client-id'] ? `${RUN_ID}-${tag}-${p.number}-${p.seq}` : null;
    if (A['json-send']) {
      body = JSON.stringify(clientId ? { body, client_id: clientId } : { body });
      headers += 'content-type:application/json\n';
    } else {
      headers += `content-type:${A['content-type']}\n` + (clientId ? `client-id:${clientId}\n` : '');
    }
    if (A.receipts) headers += `receipt:s-${tag}-${p.number}-${p.seq}\n`;
    p.conn.send(`SEND\n${headers}content-length:${Buffer.byteLength(body)}\n\n${body}\0`);
    p.seq++;
    totals.sent++;
  };
  const before = sample();
  const started = now();
  const deadline = started + seconds * 1000;
  await new Promise((resolve) => {
    if (windowed) {
      let scheduled = false;
      const run = () => {
        scheduled = false;
        if (now() >= deadline) return;
        for (const p of publishers) {
          if (!p.conn.connected) continue;
          let slowest = p.seq;
          for (const s of p.audience) if (s.connected && s.seen[p.number] + 1 < slowest) slowest = s.seen[p.number] + 1;
          const room = Math.min(A.window - (p.seq - slowest), 256);
          for (let k = 0; k < room; k++) sendOne(p);
        }
      };
      pump = () => { if (!scheduled) { scheduled = true; setImmediate(run); } };
      pump();
      setTimeout(() => { pump = () => {}; resolve(); }, seconds * 1000);
    } else {
      const perPublisher = rate / publishers.length;
      publishers.forEach((p, k) => { p.phase = (k + 1) / publishers.length; });
      const timer = setInterval(() => {
        const t = now();
        if (t >= deadline) { clearInterval(timer); resolve(); return; }
        const elapsed = (t - started) / 1000;
        for (const p of publishers) {
          if (!p.conn.connected) continue;
          // At most 50 ms of catch-up: a lagging generator sends less, it never bursts.
          const due = Math.min(Math.floor(perPublisher * elapsed + p.phase) - p.seq, Math.ceil(perPublisher * 0.05) + 1);
          for (let k = 0; k < due; k++) sendOne(p);
        }
      }, 1);
    }
  });
  const sendSeconds = (now() - started) / 1000;
  let sent = 0, expected = 0;
  for (const p of publishers) { sent += p.seq; expected += p.seq * p.audience.filter((s) => s.connected).length; }
  const drainUntil = now() + A.drain * 1000;
  const receiptsDue = () => A.receipts && currentStep.receipts < sent;
  while ((received < expected || receiptsDue()) && now() < drainUntil) await sleep(10);
  const receipts = currentStep.receipts;
  const after = sample();
  currentStep = null;
  const activeSeconds = Math.max(sendSeconds, ((lastReceived || now()) - started) / 1000);
  const use = usage(before, after);
  return {
    tag, rate: rate || 'max', window: windowed ? A.window : null, seconds: round(sendSeconds), sent,
    send_rate: round(sent / sendSeconds, 1), expected, received, lost: Math.max(0, expected - received),
    extra: Math.max(0, received - expected), out_of_order: outOfOrder,
    receipts: A.receipts ? receipts : null, missing_receipts: A.receipts ? Math.max(0, sent - receipts) : null,
    deliveries_per_s: Math.round(received / activeSeconds), latency_ms: histogram.summary(), usage: use,
    deliveries_per_server_cpu_s: use.server_cpu_s > 0 ? Math.round(received / use.server_cpu_s) : null,
  };
}

// -- modes -------------------------------------------------------------------------------------------------
async function runLoad(result) {
  let subscribers = [], publishers = [];
  const t = now();
  if (A.mode === 'rooms') {
    const total = A.rooms * A['room-size'];
    progress(`opening ${total} connections (${A.rooms} rooms of ${A['room-size']})`);
    result.connections = await openAll(total, 0, (c) => {
      c.room = Math.floor(c.index / A['room-size']);
      return c.request('SUBSCRIBE', { id: 'sub-0', destination: destination(A['sub-dest'], c.room), ack: 'auto' });
    });
    subscribers = connections.filter((c) => c.connected);
    const byRoom = new Map();
    for (const c of subscribers) { if (!byRoom.has(c.room)) byRoom.set(c.room, []); byRoom.get(c.room).push(c); }
    publishers = subscribers.map((c, number) => ({ conn: c, number, dest: destination(A['pub-dest'], c.room), audience: byRoom.get(c.room) }));
  } else {
    progress(`opening ${A.subs} subscribers and ${A.pubs} publishers`);
    result.connections = await openAll(A.subs, 0, (c) => c.request('SUBSCRIBE',
      { id: 'sub-0', destination: destination(A['sub-dest'], 0), ack: 'auto' }));
    subscribers = connections.filter((c) => c.connected);
    const pubs = await openAll(A.pubs, A.subs, async () => {});
    result.connections.ok += pubs.ok; result.connections.failed += pubs.failed;
    publishers = connections.slice(A.subs).filter((c) => c.connected)
      .map((c, number) => ({ conn: c, number, dest: destination(A['pub-dest'], 0), audience: subscribers }));
  }
  result.connections.seconds = round((now() - t) / 1000);
  progress('connected', JSON.stringify(result.connections));
  if (!subscribers.length || !publishers.length) throw new Error(`no connections: ${JSON.stringify(result.connections.errors)}`);
  const rates = String(A.rate).split(',').map(Number);
  if (A.warmup > 0) { await runStep(rates[0], A.warmup, publishers, subscribers, true); await sleep(A.pause * 1000); }
  result.steps = [];
  const failed = (step, rate) => A['stop-p99'] > 0 && rate > 0 && (step.lost > 0 || !(step.latency_ms.p99 <= A['stop-p99']));
  for (const rate of rates) {
    let step;
    // On a shared machine one scheduling hiccup can push a step's p99 over the bound: a step stops the
    // sweep only when it fails twice in a row (--retries more attempts); every attempt is reported.
    for (let attempt = 0; attempt <= A.retries; attempt++) {
      if (attempt) { progress(`rate ${rate} failed, attempt ${attempt + 1}`); await sleep(A.pause * 1000); }
      step = await runStep(rate, A.duration, publishers, subscribers);
      step.attempt = attempt + 1;
      result.steps.push(step);
      progress(`rate ${step.rate}: ${step.deliveries_per_s} deliveries/s, sent ${step.sent}, lost ${step.lost}, `
        + `p50 ${step.latency_ms.p50} p99 ${step.latency_ms.p99} ms, server ${step.usage.server_cores} cores, `
        + `loadgen ${step.usage.client_cores} cores`
        + (A.receipts ? `, receipts ${step.receipts}/${step.sent}` : ''));
      if (!failed(step, rate)) break;
    }
    if (failed(step, rate)) {
      result.stopped = `rate ${rate}: p99 ${step.latency_ms.p99} ms, lost ${step.lost}`; break;
    }
    if (A['stop-on-loss'] && step.lost > 0) { result.stopped = `rate ${rate}: lost ${step.lost}`; break; }
    await sleep(A.pause * 1000);
  }
}

async function runIdle(result) {
  const before = sample();
  const points = [{ connections: 0, rss_kb: usage(before, before).server_rss_kb }];
  let opened = 0;
  const errors = {};
  for (let step = 1; step <= A['idle-steps']; step++) {
    const target = Math.round((A.idle * step) / A['idle-steps']);
    const r = await openAll(target - opened, opened, (c) => c.request('SUBSCRIBE',
      { id: 'sub-0', destination: destination(A['sub-dest'], c.index), ack: 'auto' }));
    opened = target;
    Object.assign(errors, r.errors);
    await sleep(1000);
    const live = connections.filter((c) => c.connected).length;
    points.push({ connections: live, rss_kb: usage(before, sample()).server_rss_kb });
    progress(`idle: ${live} connections, server RSS ${points.at(-1).rss_kb} kB`);
  }
  await sleep(A.hold * 1000);
  const end = sample();
  const live = connections.filter((c) => c.connected).length;
  const xs = points.map((p) => p.connections), ys = points.map((p) => p.rss_kb);
  const mx = xs.reduce((a, b) => a + b) / xs.length, my = ys.reduce((a, b) => a + b) / ys.length;
  let sxy = 0, sxx = 0;
  xs.forEach((x, i) => { sxy += (x - mx) * (ys[i] - my); sxx += (x - mx) ** 2; });
  result.idle = { requested: A.idle, open_at_end: live, errors, points,
    rss_kb_before: points[0].rss_kb, rss_kb_end: usage(before, end).server_rss_kb,
    kb_per_connection: live ? round((usage(before, end).server_rss_kb - points[0].rss_kb) / live, 1) : null,
    kb_per_connection_slope: sxx ? round(sxy / sxx, 1) : null };
}

async function main() {
  const hardStop = setTimeout(() => { progress(`--max-time ${A['max-time']} s reached`); finish({ aborted: 'max-time' }, 3); },
    A['max-time'] * 1000);
  const result = { label: A.label, mode: A.mode, url: A.url, options: A };
  let code = 0;
  try {
    if (A.mode === 'idle') await runIdle(result); else await runLoad(result);
  } catch (error) {
    result.error = String(error.stack || error); code = 1; progress(result.error);
  }
  clearTimeout(hardStop);
  await finish(result, code);
}

let finished = false;
async function finish(result, code) {
  if (finished) return;
  finished = true;
  clearInterval(beats);
  for (const c of connections) c.close();
  await sleep(300);
  for (const c of connections) { try { c.ws.terminate(); } catch {} }
  Object.assign(result, { stomp_errors: counters.errors, first_error: counters.firstError, unexpected_closes: counters.closed,
    other_messages: counters.other, first_other_message: counters.firstOther, late_messages: counters.late,
    total_sent: totals.sent, total_receipts: totals.receipts, run_id: RUN_ID });
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(code);
}

process.on('SIGTERM', () => finish({ aborted: 'SIGTERM' }, 143));
main();
