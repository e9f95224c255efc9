/* notifications.js: the bell in the header of every signed-in page. Unread notifications come from the
 * REST API on load (so a page opened later shows what arrived while it was closed); new ones arrive over
 * an EventSource on API_ORIGIN authenticated by a single-use ticket (EventSource cannot send an
 * Authorization header, and the long-lived access token never goes into a URL). Each new one shows a
 * toast, except a mention or direct message of the room this page shows (the user is looking at it):
 * that one is marked read instead, and opening a room marks its mentions read. "read" events on the
 * stream (from this or any other page of the user) keep the count in step. Runs after global.js
 * (deferred; base.html fixes the order) and declares no globals. */
(function () {
  "use strict";
  const Chat = window.Chat;
  const { api, h } = Chat;
  const bell = document.querySelector("[data-bell]");
  if (!bell || !Chat.USER) return;

  const KINDS = ["mention", "direct_message", "room_invite", "announcement"];
  // The kinds that only point at a room's messages: the room page settles them (notifications.services.ROOM_KINDS).
  const ROOM_KINDS = ["mention", "direct_message"];
  const VIEWED_ROOM = document.querySelector("[data-room]")?.dataset.room || null;
  const RETRY_MS = [1000, 2000, 5000, 10_000, 30_000];
  // Every page of a restarted worker retries at once: each waits its step plus up to half again at random,
  // so the ticket requests after a restart are spread instead of arriving in step.
  const retryDelay = () => {
    const step = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)];
    return step + Math.random() * step * 0.5;
  };
  const ui = {
    button: bell.querySelector("[data-bell-button]"),
    count: bell.querySelector("[data-bell-count]"),
    panel: bell.querySelector(".bell-panel"),
    list: bell.querySelector("[data-bell-list]"),
    readAll: bell.querySelector("[data-bell-read-all]"),
  };
  const items = new Map(); // id -> notification, newest id first when rendered
  let lastEventId = 0;
  let unread = 0; // the server's count (older unread ones may not be in the list), kept up to date here
  let source = null;
  let failures = 0;

  const roomHref = (slug) => (slug ? `/rooms/${encodeURIComponent(slug)}/` : null);
  const roomOf = (n) => { const p = n.payload || n.data || {}; return p.room_slug || p.room || null; };
  const inRoom = (n, slug) => Boolean(slug) && ROOM_KINDS.includes(n.kind) && roomOf(n) === slug;

  /** Title, text and link of a notification, from its kind and payload (all user data stays text). */
  function describe(n) {
    const p = n.payload || n.data || {};
    const who = p.author || p.sender || p.actor || p.by || "";
    const room = p.room_name || p.room || "";
    const excerpt = p.excerpt || p.body || p.text || "";
    switch (n.kind) {
      case "mention":
        return { title: `${who} mentioned you${room ? ` in ${room}` : ""}`, text: excerpt, href: roomHref(p.room_slug || p.room) };
      case "direct_message":
        return { title: `Message from ${who}`, text: excerpt, href: roomHref(p.room_slug || p.room) };
      case "room_invite":
        return { title: `${who ? `${who} added you` : "You were added"} to ${room}`, text: "", href: roomHref(p.room_slug || p.room) };
      case "announcement":
        return { title: p.title || "Announcement", text: p.text || p.body || p.message || "", href: null };
      default:
        return { title: "Notification", text: excerpt, href: null };
    }
  }

  function renderCount() {
    ui.count.hidden = unread === 0;
    ui.count.textContent = String(unread);
    ui.count.dataset.count = String(unread);
    ui.button.setAttribute("aria-label", unread ? `Notifications, ${unread} unread` : "Notifications");
  }

  function renderList() {
    const sorted = [...items.values()].sort((a, b) => b.id - a.id);
    ui.list.replaceChildren(...(sorted.length ? sorted.map((n) => {
      const { title, text, href } = describe(n);
      const label = [h("strong", {}, title), text ? h("span", { class: "excerpt" }, text) : null,
        n.created ? h("time", { datetime: n.created }, Chat.formatTime(n.created)) : null];
      const open = href
        ? h("a", { href, onclick: (event) => { event.preventDefault(); markRead(n).finally(() => window.location.assign(href)); } }, label)
        : h("button", { type: "button", class: "link", onclick: () => markRead(n) }, label);
      return h("li", { class: n.read ? "read" : "unread", "data-notification": n.id, "data-kind": n.kind }, open);
    }) : [h("li", { class: "muted" }, "No notifications.")]));
    renderCount();
  }

  function add(n, { toast }) {
    if (!n || typeof n.id !== "number") return;
    lastEventId = Math.max(lastEventId, n.id);
    if (items.has(n.id)) return;
    items.set(n.id, n);
    if (toast && !n.read) unread += 1;
    renderList();
    if (toast) {
      if (inRoom(n, VIEWED_ROOM)) {
        // Already on screen: no toast; read at once while the page is seen (else when it is seen again).
        if (document.visibilityState === "visible") markRead(n);
      } else {
        const { title, text, href } = describe(n);
        Chat.toast({ title, text, href, kind: n.kind });
      }
      document.dispatchEvent(new CustomEvent("chat:notification", { detail: { id: n.id, kind: n.kind } }));
    }
  }

  /** This page shows a room: its mentions and direct messages are read (the server tells the other pages). */
  async function readViewedRoom() {
    if (!VIEWED_ROOM) return;
    const answer = await api("/api/notifications/read-room/", { method: "POST", json: { room: VIEWED_ROOM } });
    for (const n of items.values()) if (inRoom(n, VIEWED_ROOM)) n.read = true;
    if (answer && typeof answer.unread === "number") unread = answer.unread;
    renderList();
  }

  /** An event's JSON data, or null when it is not JSON (such an event is ignored). */
  function eventData(event) {
    try {
      return JSON.parse(event.data);
    } catch (e) {
      return null;
    }
  }

  /** A "read" event: notifications were read on some page of this user (or through the API). */
  function onRead(event) {
    const data = eventData(event);
    if (!data) return;
    for (const n of items.values()) {
      if ((data.scope === "one" && n.id === data.id) || (data.scope === "room" && inRoom(n, data.room))
        || (data.scope === "all" && (data.up_to === null || data.up_to === undefined || n.id <= data.up_to))) n.read = true;
    }
    if (typeof data.unread === "number") unread = data.unread;
    renderList();
  }

  async function markRead(n) {
    if (n.read) return;
    n.read = true;
    unread = Math.max(unread - 1, 0);
    renderList();
    try {
      await api(`/api/notifications/${n.id}/read/`, { method: "POST" });
    } catch (e) {
      n.read = false;
      unread += 1;
      renderList();
    }
  }

  ui.readAll.addEventListener("click", async () => {
    const answer = await api("/api/notifications/read-all/", { method: "POST", json: lastEventId ? { up_to: lastEventId } : {} });
    for (const n of items.values()) n.read = true;
    unread = answer && typeof answer.unread === "number" ? answer.unread : 0;
    renderList();
  });

  function setOpen(open) {
    ui.panel.hidden = !open;
    ui.button.setAttribute("aria-expanded", String(open));
  }
  ui.button.addEventListener("click", () => setOpen(ui.panel.hidden));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.panel.hidden) {
      setOpen(false);
      ui.button.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (!ui.panel.hidden && !bell.contains(event.target)) setOpen(false);
  });

  // --- The stream ------------------------------------------------------------------------------------------

  function onEvent(event) {
    const data = eventData(event);
    if (!data) return;
    const id = Number(event.lastEventId || data.id);
    add({ ...data, id, kind: data.kind || event.type, read: Boolean(data.read) }, { toast: true });
    failures = 0;
  }

  async function connect() {
    const { ticket } = await api("/api/notifications/ticket/", { method: "POST" });
    const query = new URLSearchParams({ ticket });
    if (lastEventId) query.set("last_event_id", String(lastEventId));
    source = new EventSource(`${Chat.API_ORIGIN}/api/notifications/stream/?${query}`, { withCredentials: true });
    for (const kind of KINDS) source.addEventListener(kind, onEvent);
    source.addEventListener("message", onEvent);
    source.addEventListener("read", onRead);
    source.addEventListener("open", () => bell.setAttribute("data-stream", "open"));
    // The server ends a stream whose access token expired (or after a logout or deactivation) with an
    // "event: close" saying why: reconnect at once. A page that is still signed in gets a fresh ticket
    // (api() refreshes the token first) and resumes after last_event_id, so nothing is lost; a signed-out
    // one gets no ticket, and global.js takes it to the login page.
    source.addEventListener("close", () => {
      failures = 0;
    });
    source.addEventListener("error", () => {
      // The browser would retry with the same, already used ticket: close, and reconnect with a new
      // ticket and last_event_id instead, so nothing is missed and nothing is repeated.
      source.close();
      bell.setAttribute("data-stream", "closed");
      const delay = retryDelay();
      setTimeout(() => connect().catch(retryLater), delay);
    });
  }
  function retryLater() {
    const delay = retryDelay();
    setTimeout(() => connect().catch(retryLater), delay);
  }

  async function start() {
    await Chat.ready;
    // First, so that the list and the count below already show this room's mentions as read.
    await readViewedRoom().catch(() => {});
    const [page, count] = await Promise.all([
      api("/api/notifications/", { query: { limit: 20 } }),
      api("/api/notifications/unread-count/"),
    ]);
    unread = count.unread;
    for (const n of page.results) add(n, { toast: false });
    await connect();
  }

  window.addEventListener("pagehide", () => source && source.close());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || !VIEWED_ROOM) return;
    if ([...items.values()].some((n) => !n.read && inRoom(n, VIEWED_ROOM))) readViewedRoom().catch(() => {});
  });
  start().catch(retryLater);
})();
