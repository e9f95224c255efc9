/* chat.js: the room page. History from the REST API (with "load older"), live messages, presence and
 * typing over STOMP through SockJS at API_ORIGIN + "/ws" (never a path relative to the page), read
 * markers and unread badges. Runs after the client libraries and global.js (deferred; base.html fixes
 * the order) and declares no globals. Message bodies and user names are only ever set as text. */
(function () {
  "use strict";
  const Chat = window.Chat;
  const { api, h } = Chat;
  const root = document.querySelector("[data-room]");
  if (!root) return;

  const slug = root.dataset.room;
  const ME = Chat.USER;
  const PAGE_SIZE = 50;
  const TYPING_SEND_EVERY_MS = 3000;
  const TYPING_SHOW_MS = 5000;
  const ROOMS_REFRESH_MS = 30_000;
  const SOCKJS_TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "iframe-eventsource",
    "iframe-htmlfile", "iframe-xhr-polling", "jsonp-polling"];
  const roomPath = `/api/rooms/${encodeURIComponent(slug)}`;
  const topic = `/topic/rooms.${slug}`;

  const el = {
    messages: root.querySelector("[data-messages]"),
    older: root.querySelector("[data-load-older]"),
    newer: root.querySelector("[data-load-newer]"),
    form: root.querySelector("[data-send]"),
    input: root.querySelector("[data-send] textarea"),
    status: root.querySelector("[data-connection]"),
    presence: root.querySelector("[data-presence]"),
    typing: root.querySelector("[data-typing]"),
    rooms: root.querySelector("[data-sidebar-rooms]"),
    error: root.querySelector("[data-send-error]"),
  };

  const state = {
    seen: new Set(), // message ids on the page
    newestId: 0,
    nextBefore: null,
    nextAfter: null, // opened at a message (?message=): where the gap to the live end starts
    anchored: false, // opened at a message: new messages do not scroll it away until the user scrolls
    pending: new Map(), // client_id -> <li> waiting for its broadcast
    online: new Map(), // username -> session count as the server reports it
    typing: new Map(), // username -> timer
    lastTypingSent: 0,
    unseenWhileHidden: 0,
    readSent: 0,
  };

  // --- Rendering ---------------------------------------------------------------------------------------

  function messageItem(m) {
    const mine = m.author === ME;
    const mentionsMe = !mine && ME && new RegExp(`(^|\\W)@${ME.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`).test(m.body);
    const item = h("li", { class: `message${mine ? " mine" : ""}${mentionsMe ? " mention" : ""}`, "data-id": m.id || null,
      "data-client-id": m.client_id || null },
      h("div", { class: "meta" },
        h("strong", { class: "author" }, m.author),
        h("time", { datetime: m.created || null }, m.created ? Chat.formatTime(m.created) : "sending…")),
      h("p", { class: "body" }, m.body));
    // attachments.js adds the message's files (synchronously, before the item is shown).
    root.dispatchEvent(new CustomEvent("chat:render-message", { detail: { item, message: m } }));
    return item;
  }

  function nearBottom() {
    return el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 80;
  }
  function scrollToBottom() {
    el.messages.scrollTop = el.messages.scrollHeight;
  }

  function clearEmptyNote() {
    el.messages.querySelector(".empty")?.remove();
  }

  /** Add live or resumed messages in id order; each id once. */
  function appendMessages(messages) {
    const stick = !state.anchored && nearBottom();
    for (const m of messages) {
      if (!m || typeof m.id !== "number" || state.seen.has(m.id)) continue;
      state.seen.add(m.id);
      clearEmptyNote();
      const item = messageItem(m);
      const pending = m.client_id && state.pending.get(m.client_id);
      if (pending) {
        pending.replaceWith(item);
        state.pending.delete(m.client_id);
      } else {
        // Usually the newest; a resumed gap can deliver older ids, so insert in order.
        const later = [...el.messages.querySelectorAll("li[data-id]")].find((li) => Number(li.dataset.id) > m.id);
        const firstPending = el.messages.querySelector("li.pending");
        el.messages.insertBefore(item, later || firstPending || null);
      }
      state.newestId = Math.max(state.newestId, m.id);
      if (m.author !== ME) noteUnseen();
    }
    if (stick) scrollToBottom();
    markReadSoon();
  }

  function prependMessages(messages) {
    const before = el.messages.scrollHeight - el.messages.scrollTop;
    const first = el.messages.firstElementChild;
    for (const m of messages) {
      if (state.seen.has(m.id)) continue;
      state.seen.add(m.id);
      el.messages.insertBefore(messageItem(m), first);
    }
    el.messages.scrollTop = el.messages.scrollHeight - before;
  }

  function setOlder(nextBefore) {
    state.nextBefore = nextBefore;
    el.older.hidden = !nextBefore;
  }

  function setStatus(text, transport) {
    el.status.textContent = text;
    el.status.dataset.state = transport ? "connected" : "disconnected";
    if (transport) el.status.dataset.transport = transport;
    else delete el.status.dataset.transport;
    el.form.querySelector("button").disabled = false;
  }

  function renderPresence() {
    const names = [...state.online.keys()].sort();
    el.presence.replaceChildren(...(names.length
      ? names.map((name) => h("li", { "data-user": name }, h("span", { class: "dot", "aria-hidden": "true" }), name,
        name === ME ? h("span", { class: "muted" }, " (you)") : null))
      : [h("li", { class: "muted" }, "Nobody else is here.")]));
  }

  function renderTyping() {
    const names = [...state.typing.keys()];
    el.typing.textContent = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
        : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
  }

  // --- Unread and read markers --------------------------------------------------------------------------

  const baseTitle = document.title;
  function noteUnseen() {
    if (document.visibilityState === "visible") return;
    state.unseenWhileHidden += 1;
    document.title = `(${state.unseenWhileHidden}) ${baseTitle}`;
  }

  let readTimer = null;
  function markReadSoon() {
    if (document.visibilityState !== "visible" || state.newestId <= state.readSent) return;
    clearTimeout(readTimer);
    readTimer = setTimeout(async () => {
      const id = state.newestId;
      try {
        await api(`${roomPath}/read/`, { method: "POST", json: { message_id: id } });
        state.readSent = Math.max(state.readSent, id);
      } catch (e) {
        // A later message retries.
      }
    }, 500);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    state.unseenWhileHidden = 0;
    document.title = baseTitle;
    markReadSoon();
    refreshRooms();
  });

  async function refreshRooms() {
    if (!el.rooms) return [];
    try {
      const { results } = await api("/api/rooms/");
      const mine = results.filter((r) => r.is_member || r.slug === slug);
      el.rooms.replaceChildren(...mine.map((r) => h("li", { "data-slug": r.slug, class: r.slug === slug ? "current" : null },
        h("a", { href: `/rooms/${encodeURIComponent(r.slug)}/`, "aria-current": r.slug === slug ? "page" : null }, r.name),
        r.slug !== slug && r.unread > 0
          ? h("span", { class: "badge", "data-unread": r.unread }, String(r.unread), h("span", { class: "visually-hidden" }, " unread"))
          : null)));
      return results;
    } catch (e) {
      return [];
    }
  }

  // --- History over REST ---------------------------------------------------------------------------------

  async function loadLatest() {
    const page = await api(`${roomPath}/messages/`, { query: { limit: PAGE_SIZE } });
    el.messages.replaceChildren();
    if (!page.results.length) el.messages.append(h("li", { class: "empty muted" }, "No messages yet. Say hello!"));
    appendMessages(page.results);
    setOlder(page.next_before);
    scrollToBottom();
  }

  async function loadOlder() {
    if (!state.nextBefore) return;
    el.older.disabled = true;
    try {
      const page = await api(`${roomPath}/messages/`, { query: { before: state.nextBefore, limit: PAGE_SIZE } });
      prependMessages(page.results); // oldest first, all before the current first
      setOlder(page.next_before);
    } finally {
      el.older.disabled = false;
    }
  }
  el.older.addEventListener("click", loadOlder);

  /** Opened from a search result (?message=<id>): that message amid its context, marked and centred; the
   * newer messages up to the live end come with "Load newer messages". */
  async function loadAround(id) {
    const page = await api(`${roomPath}/messages/`, { query: { around: id, limit: PAGE_SIZE } });
    const latest = page.next_after ? await api(`${roomPath}/messages/`, { query: { limit: 1 } }) : null;
    el.messages.replaceChildren();
    state.anchored = true;
    appendMessages(page.results);
    setOlder(page.next_before);
    setNewer(page.next_after);
    // The subscription resumes from the room's newest message, not from the end of this window.
    if (latest && latest.results.length) state.newestId = Math.max(state.newestId, latest.results[0].id);
    const target = el.messages.querySelector(`li[data-id="${CSS.escape(String(id))}"]`);
    if (target) {
      target.classList.add("target");
      target.setAttribute("aria-current", "true");
      target.scrollIntoView({ block: "center" });
    }
  }

  function setNewer(nextAfter) {
    state.nextAfter = nextAfter;
    el.newer.hidden = !nextAfter;
  }

  async function loadNewer() {
    if (!state.nextAfter) return;
    el.newer.disabled = true;
    try {
      const page = await api(`${roomPath}/messages/`, { query: { after: state.nextAfter, limit: PAGE_SIZE } });
      appendMessages(page.results); // in id order, before the live messages that came meanwhile
      const seenAll = !page.next_after || page.results.some((m) => m.id >= state.newestId);
      setNewer(seenAll ? null : page.next_after);
    } finally {
      el.newer.disabled = false;
    }
  }
  el.newer.addEventListener("click", loadNewer);
  for (const name of ["wheel", "touchmove", "keydown"]) {
    el.messages.addEventListener(name, () => { state.anchored = false; }, { passive: true });
  }

  /** Everything after newestId, over REST: after a reconnect the server said it could not resume. */
  async function catchUp() {
    for (;;) {
      const page = await api(`${roomPath}/messages/`, { query: { after: state.newestId, limit: 200 } });
      appendMessages(page.results);
      if (!page.next_after || !page.results.length) return;
    }
  }

  // --- STOMP over SockJS -----------------------------------------------------------------------------------

  function forcedTransports() {
    // ?transports=xhr-streaming (comma-separated): for diagnosing proxies that break WebSockets.
    const wanted = new URLSearchParams(window.location.search).get("transports");
    if (!wanted) return undefined;
    const list = wanted.split(",").map((t) => t.trim()).filter((t) => SOCKJS_TRANSPORTS.includes(t));
    return list.length ? list : undefined;
  }

  function parse(frame) {
    try {
      return JSON.parse(frame.body);
    } catch (e) {
      return null;
    }
  }

  function onPresence(event) {
    if (!event) return;
    const type = event.type || event.event;
    const users = event.users || event.online || event.members;
    if (Array.isArray(users)) {
      state.online = new Map(users.map((u) => [typeof u === "string" ? u : u.username, 1]));
    } else if (type === "join" || type === "online") {
      state.online.set(event.user || event.username, 1);
    } else if (type === "leave" || type === "offline") {
      state.online.delete(event.user || event.username);
    } else if (type === "typing") {
      onTyping(event);
      return;
    }
    if (ME) state.online.set(ME, 1); // this page is connected, whatever the snapshot raced with
    renderPresence();
  }

  function onTyping(event) {
    const who = event && (event.user || event.username || event.author);
    if (!who || who === ME) return;
    clearTimeout(state.typing.get(who));
    if (event.typing === false) state.typing.delete(who);
    else state.typing.set(who, setTimeout(() => { state.typing.delete(who); renderTyping(); }, TYPING_SHOW_MS));
    renderTyping();
  }

  function onRoomMessage(frame) {
    const m = parse(frame);
    if (!m) return;
    if (m.author) {
      clearTimeout(state.typing.get(m.author));
      state.typing.delete(m.author);
      renderTyping();
    }
    appendMessages([m]);
  }

  // Always API_ORIGIN + "/ws", never a path relative to the page. An https page upgrades http:// requests
  // (CSP upgrade-insecure-requests), but sockjs-client refuses an http:// URL from an https page before
  // the browser could, so the upgrade is spelled out here (check --deploy reports that misconfiguration).
  const sockjsUrl = `${window.location.protocol === "https:" ? Chat.API_ORIGIN.replace(/^http:/, "https:") : Chat.API_ORIGIN}/ws`;

  // Each SockJS connection is bound to this page by a key the server issues (POST /ws/key) and the
  // page appends to the URL; sockjs-client keeps that query on every request of the session, and the
  // server answers 403 to a request for the session without it (or from another address or origin).
  // A header is impossible (sockjs-client sets none) and a cookie from the API origin would be a
  // blocked third-party cookie. 32-character session ids (160 random bits) instead of sockjs-client's 8.
  let sessionKey = null;
  async function newSessionKey() {
    try {
      const response = await fetch(`${sockjsUrl}/key`, { method: "POST", credentials: "omit" });
      if (response.ok) return (await response.json()).key || null;
    } catch (e) {
      // The API is unreachable: SockJS will fail the same way and the client retries.
    }
    return null;
  }
  function sockjsSessionUrl() {
    return sessionKey ? `${sockjsUrl}?key=${encodeURIComponent(sessionKey)}` : sockjsUrl;
  }

  // Reconnecting: after a proxy reload or a worker restart every page reconnects at once. Each waits a
  // jittered, growing delay (so they do not come back in step), and never less than the retry-after the
  // server gave with ERROR code:busy (its CONNECT admission spreads the refused pages over time).
  const RECONNECT_MS = [1000, 2000, 4000, 8000, 15_000, 30_000];
  let reconnects = 0;
  let retryAfterMs = 0;
  function reconnectWait() {
    if (!reconnects && !retryAfterMs) return 0; // the first connect: at once
    const base = RECONNECT_MS[Math.min(reconnects - 1, RECONNECT_MS.length - 1)] || RECONNECT_MS[0];
    const floor = Math.max(retryAfterMs, base / 2);
    retryAfterMs = 0;
    return floor + Math.random() * Math.max(base / 2, floor / 2);
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const client = new window.StompJs.Client({
    webSocketFactory: () => new window.SockJS(sockjsSessionUrl(), null, { transports: forcedTransports(), sessionId: 32 }),
    reconnectDelay: 200, // stompjs's own fixed delay: the real wait is reconnectWait() in beforeConnect
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    debug: () => {},
    beforeConnect: async () => {
      const wait = reconnectWait();
      if (wait) await sleep(wait);
      const [token, key] = await Promise.all([Chat.accessToken(), newSessionKey()]);
      sessionKey = key;
      client.connectHeaders = token ? { Authorization: `Bearer ${token}` } : {};
    },
    onConnect: () => {
      reconnects = 0;
      const transport = client.webSocket && client.webSocket.transport;
      setStatus(`Connected${transport ? ` (${transport})` : ""}`, transport || "websocket");
      client.subscribe(topic, (frame) => {
        if (frame.headers["resume-gap"] || frame.headers["since-id-gap"]) catchUp().catch(() => {});
        onRoomMessage(frame);
      }, { "since-id": String(state.newestId) });
      client.subscribe(`${topic}.presence`, (frame) => onPresence(parse(frame)));
      client.subscribe(`${topic}.typing`, (frame) => onTyping(parse(frame)));
      client.subscribe("/user/queue/errors", (frame) => onSendError(parse(frame) || { detail: frame.body }));
      client.subscribe("/user/queue/dm", () => refreshRooms());
      resendPending();
    },
    onStompError: (frame) => {
      const retryAfter = Number(frame.headers["retry-after"]);
      if (retryAfter > 0) retryAfterMs = retryAfter * 1000;
      setStatus(`Server error: ${frame.headers.message || "unknown"}; reconnecting…`, null);
    },
    onWebSocketClose: () => {
      reconnects += 1;
      const busy = retryAfterMs ? `Server busy; reconnecting in ${Math.round(retryAfterMs / 1000)} s…` : null;
      setStatus(busy || "Disconnected; reconnecting…", null);
      state.online.clear();
      renderPresence();
    },
  });

  // --- Sending ----------------------------------------------------------------------------------------------

  function newClientId() {
    return window.crypto && crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
  }

  function publish(clientId, body, attachments = []) {
    client.publish({
      destination: `/app/rooms.${slug}`,
      body: JSON.stringify({ body, client_id: clientId, attachments }),
      headers: { "content-type": "application/json", receipt: `send-${clientId}` },
    });
  }

  /** A SEND the server refused (empty, too long, not a member): the connection stays open. */
  function onSendError(error) {
    const item = error.client_id && state.pending.get(error.client_id);
    if (item) {
      state.pending.delete(error.client_id);
      item.classList.replace("pending", "failed");
      item.querySelector("time").textContent = "not sent";
      el.error.textContent = `Not sent: ${error.detail || "refused by the server"}`;
      el.error.hidden = false;
      return;
    }
    Chat.toast({ title: "Chat error", text: error.detail || error.message || "refused by the server", kind: "error" });
  }

  // The server closes a STOMP connection when its access token expires; hand it each new one in time.
  document.addEventListener("chat:tokens", () => {
    const pair = Chat.tokens();
    if (client.connected && pair) {
      client.publish({ destination: "/app/auth.refresh", headers: { Authorization: `Bearer ${pair.access}` }, body: "" });
    }
  });

  function resendPending() {
    // A repeated client_id is stored once, so resending after a reconnect cannot duplicate.
    for (const [clientId, item] of state.pending) publish(clientId, item.dataset.body, JSON.parse(item.dataset.attachments));
  }

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = el.input.value;
    // attachments.js hands over the finished uploads (or asks to wait for the unfinished ones).
    const compose = { attachments: [], wait: null };
    root.dispatchEvent(new CustomEvent("chat:compose", { detail: compose }));
    if (compose.wait) {
      el.error.textContent = compose.wait;
      el.error.hidden = false;
      return;
    }
    const { attachments } = compose;
    if (!body.trim() && !attachments.length) return;
    el.error.hidden = true;
    const clientId = newClientId();
    const item = messageItem({ author: ME, body, client_id: clientId });
    item.classList.add("pending");
    item.dataset.body = body;
    item.dataset.attachments = JSON.stringify(attachments);
    clearEmptyNote();
    el.messages.append(item);
    state.pending.set(clientId, item);
    scrollToBottom();
    el.input.value = "";
    state.lastTypingSent = 0;
    if (client.connected) {
      publish(clientId, body, attachments);
      return;
    }
    try { // not connected right now: the REST API stores it; the broadcast arrives when we are back
      appendMessages([await api(`${roomPath}/messages/`, { method: "POST", json: { body, client_id: clientId, attachments } })]);
    } catch (error) {
      el.error.textContent = `Not sent: ${error.message}`;
      el.error.hidden = false;
    }
  });

  el.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.form.requestSubmit();
    }
  });

  el.input.addEventListener("input", () => {
    const now = Date.now();
    if (!client.connected || !el.input.value || now - state.lastTypingSent < TYPING_SEND_EVERY_MS) return;
    state.lastTypingSent = now;
    client.publish({
      destination: `/app/rooms.${slug}.typing`, body: JSON.stringify({ typing: true }), headers: { "content-type": "application/json" },
    });
  });

  // --- Start: tokens, membership, history, then live --------------------------------------------------------

  async function start() {
    await Chat.ready;
    const rooms = await refreshRooms();
    const room = rooms.find((r) => r.slug === slug);
    if (room && !room.is_member && !room.is_private) {
      await api(`${roomPath}/join/`, { method: "POST" });
      refreshRooms();
    }
    const target = Number(new URLSearchParams(window.location.search).get("message"));
    if (Number.isSafeInteger(target) && target > 0) await loadAround(target);
    else await loadLatest();
    client.activate();
  }

  setStatus("Connecting…", null);
  renderPresence();
  start().catch((error) => {
    setStatus(`Could not open the room: ${error.message}`, null);
  });
  setInterval(() => document.visibilityState === "visible" && refreshRooms(), ROOMS_REFRESH_MS);
  document.addEventListener("chat:notification", refreshRooms);
  window.addEventListener("pagehide", () => client.deactivate());
})();
