/* chat.js: the room page. History from the REST API (with "load older"), live messages, presence and
 * typing over STOMP through SockJS at API_ORIGIN + "/ws" (never a path relative to the page), read
 * markers and unread badges. Messages are grouped by author, split by day, formatted by format.js
 * (window.ChatFormat) and carry their actions: edit, delete, reactions, reply; the room topic's edit,
 * delete, reaction and read events update them live, and a reconnect resumes by event-seq. Runs after
 * the client libraries, global.js and format.js (deferred; the templates fix the order) and declares no
 * globals. Message bodies and user names are only ever set as text or built as DOM nodes. */
(function () {
  "use strict";
  const Chat = window.Chat;
  // roomApi for anything about this room: a leave (members.js) orders those around itself.
  const { api, roomApi, h } = Chat;
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

  const GROUP_WITHIN_MS = 5 * 60_000; // consecutive messages of one author this close share one header
  const RELATIVE_TIME_EVERY_MS = 30_000;
  const READ_THROTTLE_MS = 1500; // at most one read-marker POST this often
  const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "✅"];
  const Format = window.ChatFormat;

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
    replying: root.querySelector("[data-replying]"),
  };

  const state = {
    seen: new Set(), // message ids on the page
    messages: new Map(), // id -> the newest message JSON seen for it (edits, deletes, reactions applied)
    newestId: 0,
    lastSeq: 0, // the room's newest event-seq seen: the resume point for edits, deletes and reactions too
    nextBefore: null,
    nextAfter: null, // opened at a message (?message=): where the gap to the live end starts
    anchored: false, // opened at a message: new messages do not scroll it away until the user scrolls
    pending: new Map(), // client_id -> <li> waiting for its broadcast
    online: new Map(), // username -> session count as the server reports it
    typing: new Map(), // username -> timer
    lastTypingSent: 0,
    unseenWhileHidden: 0,
    readSent: 0,
    room: null, // room detail: role, kind, read markers
    dividerBefore: null, // id of the first message that was new when the page opened
    otherRead: 0, // direct rooms: the other member's read marker ("seen")
    replyTo: null, // {id, author, excerpt} of the message the next send answers
    closed: false, // the server took the room from this user (roomClosed): the page only shows why
  };

  // --- Times and dates ------------------------------------------------------------------------------------

  function exactTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
  }

  function relativeTime(iso, now = Date.now()) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000));
    if (seconds < 45) return "just now";
    if (seconds < 3600) return `${Math.max(1, Math.floor(seconds / 60))} min ago`;
    if (seconds < 6 * 3600 && new Date(now).toDateString() === date.toDateString()) return `${Math.floor(seconds / 3600)} h ago`;
    return Chat.formatTime(iso);
  }

  function dayLabel(date) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (date.toDateString() === today.toDateString()) return "Today";
    if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
    return date.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  function timeNode(iso) {
    if (!iso) return h("time", {}, "sending…");
    return h("time", { datetime: iso, title: exactTime(iso) }, relativeTime(iso));
  }

  function refreshTimes() {
    const now = Date.now();
    for (const node of el.messages.querySelectorAll("time[datetime]")) node.textContent = relativeTime(node.dateTime, now);
    for (const node of el.messages.querySelectorAll("li.day-separator[data-day]")) {
      node.firstElementChild.textContent = dayLabel(new Date(node.dataset.day));
    }
  }

  // --- Rendering ---------------------------------------------------------------------------------------

  const mentionPattern = ME ? new RegExp(`(^|\\W)@${ME.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`) : null;

  function canDelete(m) {
    return m.author === ME || (state.room && state.room.role === "owner");
  }

  function replyQuote(reply) {
    const text = reply.excerpt ? reply.excerpt : "message deleted";
    return h("button", { type: "button", class: "reply-quote", "data-reply-to": reply.id, title: "Show the original message",
      onclick: () => jumpTo(reply.id) },
    h("span", { class: "reply-author" }, reply.author), " ", h("span", { class: "reply-excerpt" }, text));
  }

  function reactionsNode(m) {
    const reactions = Array.isArray(m.reactions) ? m.reactions : [];
    return h("div", { class: "reactions", "data-reactions": "" }, reactions.filter((r) => r.count > 0).map((r) => {
      const users = Array.isArray(r.users) ? r.users : [];
      const mine = users.includes(ME);
      return h("button", { type: "button", class: `reaction${mine ? " mine" : ""}`, "data-emoji": r.emoji,
        "aria-pressed": mine ? "true" : "false", title: `${users.join(", ") || "nobody"} reacted with ${r.emoji}`,
        onclick: () => toggleReaction(m.id, r.emoji) },
      h("span", { class: "emoji" }, r.emoji), " ", h("span", { class: "count" }, String(r.count)));
    }));
  }

  function actionsNode(m) {
    const mine = m.author === ME;
    return h("div", { class: "actions", role: "group", "aria-label": "Message actions" },
      h("button", { type: "button", class: "link", "data-action": "reply", onclick: () => startReply(m.id) }, "Reply"),
      h("button", { type: "button", class: "link", "data-action": "react", "aria-expanded": "false",
        onclick: (event) => togglePicker(m.id, event.currentTarget) }, "React"),
      mine ? h("button", { type: "button", class: "link", "data-action": "edit", onclick: () => startEdit(m.id) }, "Edit") : null,
      canDelete(m) ? h("button", { type: "button", class: "link danger", "data-action": "delete", onclick: () => deleteMessage(m.id) }, "Delete") : null);
  }

  function messageItem(m) {
    const mine = m.author === ME;
    const deleted = Boolean(m.deleted);
    const mentionsMe = !mine && !deleted && mentionPattern && mentionPattern.test(m.body || "");
    const item = h("li", {
      class: `message${mine ? " mine" : ""}${mentionsMe ? " mention" : ""}${deleted ? " deleted" : ""}`,
      "data-id": m.id || null, "data-client-id": m.client_id || null, "data-author": m.author,
      "data-created": m.created || null },
    m.reply_to ? replyQuote(m.reply_to) : null,
    h("div", { class: "meta" },
      h("strong", { class: "author" }, m.author),
      timeNode(m.created),
      m.edited && !deleted ? h("span", { class: "edited", title: `Edited ${exactTime(m.edited)}` }, "(edited)") : null),
    deleted
      ? h("p", { class: "body tombstone" }, "message deleted")
      : h("div", { class: "body" }, Format ? Format.format(m.body || "", document) : m.body || ""));
    // attachments.js adds the message's files (synchronously, before the item is shown).
    if (!deleted) root.dispatchEvent(new CustomEvent("chat:render-message", { detail: { item, message: m } }));
    if (m.id && !deleted) item.append(reactionsNode(m), actionsNode(m));
    return item;
  }

  function findItem(id) {
    return el.messages.querySelector(`li.message[data-id="${CSS.escape(String(id))}"]`);
  }

  /** Day separators, grouping, the "new messages" divider and "seen", recomputed over the list in one
   * pass after every change (a few hundred items at most: the list is paged). */
  function decorate() {
    for (const node of el.messages.querySelectorAll(":scope > li.day-separator, :scope > li.new-divider")) node.remove();
    let previous = null;
    let divided = false;
    for (const item of [...el.messages.children]) {
      if (!item.classList.contains("message")) continue;
      const created = item.dataset.created ? new Date(item.dataset.created) : new Date();
      const day = created.toDateString();
      let fresh = false;
      if (!previous || previous.day !== day) {
        item.before(h("li", { class: "day-separator", role: "separator", "data-day": new Date(created.getFullYear(), created.getMonth(), created.getDate()).toISOString() },
          h("span", {}, dayLabel(created))));
        fresh = true;
      }
      if (!divided && state.dividerBefore && Number(item.dataset.id) === state.dividerBefore) {
        item.before(h("li", { class: "new-divider", role: "separator", "data-new-divider": "" }, h("span", {}, "New messages")));
        divided = true;
        fresh = true;
      }
      const grouped = !fresh && previous && previous.author === item.dataset.author && !previous.deleted
        && !item.classList.contains("deleted") && !item.querySelector(":scope > .reply-quote")
        && created - previous.created < GROUP_WITHIN_MS;
      item.classList.toggle("grouped", Boolean(grouped));
      previous = { author: item.dataset.author, created, day, deleted: item.classList.contains("deleted") };
    }
    renderSeen();
  }

  /** Direct rooms: "Seen" under the newest own message the other member has read. */
  function renderSeen() {
    for (const node of el.messages.querySelectorAll(".seen")) node.remove();
    if (!state.room || state.room.kind !== "direct" || !state.otherRead) return;
    const mine = [...el.messages.querySelectorAll("li.message.mine[data-id]")].filter((li) => Number(li.dataset.id) <= state.otherRead);
    const last = mine[mine.length - 1];
    if (last) last.append(h("p", { class: "seen", "data-seen": "" }, "Seen"));
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

  function remember(m) {
    state.seen.add(m.id);
    state.messages.set(m.id, m);
  }

  /** Add live or resumed messages in id order; each id once. */
  function appendMessages(messages) {
    const stick = !state.anchored && nearBottom();
    for (const m of messages) {
      if (!m || typeof m.id !== "number") continue;
      if (state.seen.has(m.id)) {
        // A replay or a page that overlaps: the copy may be newer (edited, deleted, reacted to since).
        if (m.edited !== undefined) updateMessage(m);
        continue;
      }
      remember(m);
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
        el.messages.insertBefore(item, later || firstPending || null); // decorate() redoes the separators
      }
      state.newestId = Math.max(state.newestId, m.id);
      if (m.author !== ME) noteUnseen(m);
    }
    decorate();
    if (stick) scrollToBottom();
    markReadSoon();
  }

  function prependMessages(messages) {
    const before = el.messages.scrollHeight - el.messages.scrollTop;
    const first = el.messages.firstElementChild;
    for (const m of messages) {
      if (state.seen.has(m.id)) continue;
      remember(m);
      el.messages.insertBefore(messageItem(m), first);
    }
    decorate();
    el.messages.scrollTop = el.messages.scrollHeight - before;
  }

  /** An edit, a delete or a newer copy of a message on the page: its item is rebuilt in place (an open
   * editor survives a reaction arriving meanwhile). */
  function updateMessage(m) {
    if (!m || typeof m.id !== "number" || !state.messages.has(m.id)) return;
    state.messages.set(m.id, m);
    const old = findItem(m.id);
    if (old) {
      const item = messageItem(m);
      for (const name of ["target"]) if (old.classList.contains(name)) item.classList.add(name);
      const editor = old.querySelector(".edit-form");
      if (editor && !m.deleted) {
        const focused = editor.contains(document.activeElement);
        item.querySelector(".body").hidden = true;
        item.querySelector(".body").after(editor);
        if (focused) editor.querySelector("textarea").focus();
      }
      old.replaceWith(item);
    }
    // Replies elsewhere on the page quote the start of this message.
    for (const quote of el.messages.querySelectorAll(`.reply-quote[data-reply-to="${CSS.escape(String(m.id))}"] .reply-excerpt`)) {
      quote.textContent = m.deleted ? "message deleted" : excerpt(m.body);
    }
    if (state.replyTo && state.replyTo.id === m.id) {
      if (m.deleted) cancelReply();
      else showReply({ id: m.id, author: m.author, excerpt: excerpt(m.body) });
    }
    decorate();
  }

  function updateReactions(id, reactions) {
    const m = state.messages.get(id);
    if (!m || !Array.isArray(reactions)) return;
    m.reactions = reactions;
    const node = findItem(id)?.querySelector(":scope > .reactions");
    if (node) node.replaceWith(reactionsNode(m));
  }

  function excerpt(body, length = 100) {
    const text = Format ? Format.plainText(Format.parse(body || "")) : body || "";
    const flat = text.split(/\s+/).filter(Boolean).join(" ");
    return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
  }

  function setOlder(nextBefore) {
    state.nextBefore = nextBefore;
    el.older.hidden = !nextBefore;
  }

  function setStatus(text, transport) {
    if (state.closed) return; // roomClosed() said why, for good
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

  // --- Message actions: edit, delete, react, reply -----------------------------------------------------------

  const messagePath = (id) => `${roomPath}/messages/${encodeURIComponent(String(id))}/`;

  function actionError(error, what) {
    Chat.toast({ title: `Could not ${what}`, text: error.message || "refused by the server", kind: "error" });
  }

  function startEdit(id) {
    const item = findItem(id);
    const m = state.messages.get(id);
    if (!item || !m || m.deleted || item.querySelector(".edit-form")) return;
    const body = item.querySelector(":scope > .body");
    const input = h("textarea", { class: "edit-input", rows: "3", "aria-label": "Edit message",
      maxlength: el.input.getAttribute("maxlength") || null });
    input.value = m.body;
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const close = () => {
      form.remove();
      body.hidden = false;
    };
    const form = h("form", { class: "edit-form" }, input,
      h("div", { class: "edit-buttons" },
        h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", class: "secondary", onclick: close }, "Cancel"),
        h("span", { class: "muted" }, "Enter to save, Escape to cancel")),
      error);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = input.value;
      const current = state.messages.get(id);
      if (current && text === current.body) return close();
      if (!text.trim()) {
        error.textContent = "A message cannot be empty: delete it instead.";
        error.hidden = false;
        return;
      }
      form.querySelector("button[type=submit]").disabled = true;
      try {
        const updated = await roomApi(messagePath(id), { method: "PATCH", json: { body: text } });
        form.remove();
        updateMessage(updated);
      } catch (e) {
        error.textContent = `Not saved: ${e.message}`;
        error.hidden = false;
        form.querySelector("button[type=submit]").disabled = false;
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        event.preventDefault();
        close();
        item.querySelector("[data-action=edit]")?.focus();
      }
    });
    body.hidden = true;
    body.after(form);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  async function deleteMessage(id) {
    const m = state.messages.get(id);
    if (!m || m.deleted) return;
    const what = m.author === ME ? "your message" : `${m.author}'s message`;
    if (!window.confirm(`Delete ${what}? This cannot be undone.`)) return;
    try {
      updateMessage(await roomApi(messagePath(id), { method: "DELETE" }));
    } catch (e) {
      actionError(e, "delete the message");
    }
  }

  async function toggleReaction(id, emoji) {
    closePicker();
    try {
      const result = await roomApi(`${messagePath(id)}reactions/`, { method: "POST", json: { emoji } });
      updateReactions(result.id ?? id, result.reactions);
    } catch (e) {
      actionError(e, "react");
    }
  }

  let openPicker = null;
  function closePicker() {
    if (!openPicker) return;
    openPicker.button.setAttribute("aria-expanded", "false");
    openPicker.node.remove();
    openPicker = null;
  }
  function togglePicker(id, button) {
    const wasOpen = openPicker && openPicker.id === id;
    closePicker();
    if (wasOpen) return;
    const node = h("div", { class: "reaction-picker", role: "group", "aria-label": "Pick a reaction" },
      QUICK_REACTIONS.map((emoji) => h("button", { type: "button", "data-emoji": emoji, "aria-label": `React with ${emoji}`,
        title: `React with ${emoji}`, onclick: () => toggleReaction(id, emoji) }, emoji)));
    node.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        closePicker();
        button.focus();
      }
    });
    button.setAttribute("aria-expanded", "true");
    button.closest(".actions").after(node);
    openPicker = { id, button, node };
    node.querySelector("button").focus();
  }
  document.addEventListener("click", (event) => {
    if (openPicker && !openPicker.node.contains(event.target) && event.target !== openPicker.button) closePicker();
  });

  function showReply(reply) {
    state.replyTo = reply;
    if (!el.replying) return;
    el.replying.replaceChildren(
      h("span", {}, "Replying to ", h("strong", {}, reply.author), ": ", h("span", { class: "reply-excerpt" }, reply.excerpt || "…")),
      h("button", { type: "button", class: "link", "data-cancel-reply": "", onclick: cancelReply }, "Cancel reply"));
    el.replying.hidden = false;
  }
  function startReply(id) {
    const m = state.messages.get(id);
    if (!m || m.deleted) return;
    showReply({ id, author: m.author, excerpt: excerpt(m.body) });
    el.input.focus();
  }
  function cancelReply() {
    state.replyTo = null;
    if (el.replying) {
      el.replying.hidden = true;
      el.replying.replaceChildren();
    }
  }

  /** Show a message: scrolled to and marked if it is on the page, otherwise the history around it. */
  async function jumpTo(id) {
    let target = findItem(id);
    if (!target) {
      try {
        await loadAround(id);
      } catch (e) {
        actionError(e, "show that message");
        return;
      }
      target = findItem(id);
    }
    if (!target) return;
    for (const node of el.messages.querySelectorAll("li.target")) {
      node.classList.remove("target");
      node.removeAttribute("aria-current");
    }
    target.classList.add("target");
    target.setAttribute("aria-current", "true");
    state.anchored = true;
    target.scrollIntoView({ block: "center" });
  }

  // --- Unread and read markers --------------------------------------------------------------------------

  const baseTitle = document.title;
  function noteUnseen(m) {
    if (document.visibilityState === "visible") return;
    // The first message of someone else while the tab is hidden is where the user left off this time.
    if (state.unseenWhileHidden === 0) state.dividerBefore = m.id;
    state.unseenWhileHidden += 1;
    document.title = `(${state.unseenWhileHidden}) ${baseTitle}`;
  }

  /** The newest message the user can see: its top inside the visible part of the list. */
  function newestVisibleId() {
    const box = el.messages.getBoundingClientRect();
    const items = el.messages.querySelectorAll("li.message[data-id]");
    for (let i = items.length - 1; i >= 0; i -= 1) {
      const rect = items[i].getBoundingClientRect();
      if (rect.bottom <= box.top) return 0; // everything from here up is scrolled past: nothing newer was visible
      if (rect.top < box.bottom - 4) return Number(items[i].dataset.id);
    }
    return 0;
  }

  // The marker moves only for messages the user could have read: the page visible and focused and the
  // message scrolled into view. One POST per READ_THROTTLE_MS at most.
  let readTimer = null;
  let lastReadPost = 0;
  function markReadSoon() {
    if (readTimer) return;
    const wait = Math.max(300, lastReadPost + READ_THROTTLE_MS - Date.now());
    readTimer = setTimeout(() => {
      readTimer = null;
      markReadNow();
    }, wait);
  }
  async function markReadNow() {
    if (document.visibilityState !== "visible" || !document.hasFocus()) return;
    const id = newestVisibleId();
    if (!id || id <= state.readSent) return;
    lastReadPost = Date.now();
    const previous = state.readSent;
    state.readSent = id;
    try {
      await roomApi(`${roomPath}/read/`, { method: "POST", json: { message_id: id, last_read_message_id: id } });
    } catch (e) {
      state.readSent = previous; // the next scroll or message retries
    }
  }
  el.messages.addEventListener("scroll", markReadSoon, { passive: true });
  window.addEventListener("focus", markReadSoon);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    state.unseenWhileHidden = 0;
    document.title = baseTitle;
    markReadSoon();
    refreshRooms();
  });

  function onRead(event) {
    if (!event || event.user === ME || typeof event.last_read_message_id !== "number") return;
    if (event.last_read_message_id <= state.otherRead) return;
    state.otherRead = event.last_read_message_id;
    renderSeen();
  }

  /** The room detail: the caller's role (owners delete any message), the read markers. */
  async function loadRoom() {
    try {
      state.room = await roomApi(`${roomPath}/`);
    } catch (e) {
      state.room = null;
      return;
    }
    const mine = state.room.last_read_message_id;
    if (typeof mine === "number") state.readSent = Math.max(state.readSent, mine);
    const other = otherReadOf(state.room);
    if (other) state.otherRead = Math.max(state.otherRead, other);
    if (typeof state.room.event_seq === "number") state.lastSeq = Math.max(state.lastSeq, state.room.event_seq);
  }

  /** The other member's read marker in a direct room (0 elsewhere). */
  function otherReadOf(room) {
    return typeof room.other_last_read_message_id === "number" ? room.other_last_read_message_id : 0;
  }

  /** Where the user left off: before the first message of someone else after their read marker. */
  function placeDivider(messages) {
    const lastRead = state.room && state.room.last_read_message_id;
    if (typeof lastRead !== "number") return null;
    const first = messages.filter((m) => m.id > lastRead && m.author !== ME).sort((a, b) => a.id - b.id)[0];
    state.dividerBefore = first ? first.id : null;
    return state.dividerBefore;
  }

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

  /** Empty the list for another window of history (the pending sends stay at the end). */
  function resetList() {
    state.seen.clear();
    state.messages.clear();
    el.messages.replaceChildren(...state.pending.values());
  }

  /** The newest page; opened where the user left off when there are new messages ("New messages"). */
  async function loadLatest() {
    const page = await roomApi(`${roomPath}/messages/`, { query: { limit: PAGE_SIZE } });
    resetList();
    if (!page.results.length) el.messages.append(h("li", { class: "empty muted" }, "No messages yet. Say hello!"));
    placeDivider(page.results);
    appendMessages(page.results);
    setOlder(page.next_before);
    const divider = el.messages.querySelector("[data-new-divider]");
    if (divider) divider.scrollIntoView({ block: "start" });
    else scrollToBottom();
    markReadSoon();
  }

  async function loadOlder() {
    if (!state.nextBefore) return;
    el.older.disabled = true;
    try {
      const page = await roomApi(`${roomPath}/messages/`, { query: { before: state.nextBefore, limit: PAGE_SIZE } });
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
    const page = await roomApi(`${roomPath}/messages/`, { query: { around: id, limit: PAGE_SIZE } });
    const latest = page.next_after ? await roomApi(`${roomPath}/messages/`, { query: { limit: 1 } }) : null;
    resetList();
    state.anchored = true;
    appendMessages(page.results);
    setOlder(page.next_before);
    setNewer(page.next_after);
    // The subscription resumes from the room's newest message, not from the end of this window.
    if (latest && latest.results.length) state.newestId = Math.max(state.newestId, latest.results[0].id);
    const target = findItem(id);
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
      const page = await roomApi(`${roomPath}/messages/`, { query: { after: state.nextAfter, limit: PAGE_SIZE } });
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

  /** Everything after newestId, over REST: after a reconnect the server said it could not resume. The
   * messages already on the page are fetched again too (bounded by what is shown), so edits, deletes
   * and reactions missed in the gap are applied. */
  async function catchUp() {
    const shown = [...state.messages.keys()];
    if (shown.length) {
      let after = Math.min(...shown) - 1;
      for (let pages = 0; pages < 20 && after < state.newestId; pages += 1) {
        const page = await roomApi(`${roomPath}/messages/`, { query: { after, limit: 200 } });
        for (const m of page.results) if (state.seen.has(m.id)) updateMessage(m);
        if (!page.next_after || !page.results.length) break;
        after = page.results[page.results.length - 1].id;
      }
    }
    for (;;) {
      const page = await roomApi(`${roomPath}/messages/`, { query: { after: state.newestId, limit: 200 } });
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

  /** One MESSAGE of the room topic: header `event` says what happened (message, edit, delete, reaction,
   * read), `event-seq` where it sits in the room's event stream (the resume point). */
  function onRoomMessage(frame) {
    const m = parse(frame);
    if (!m) return;
    const seq = Number(frame.headers["event-seq"]);
    if (Number.isSafeInteger(seq) && seq > state.lastSeq) state.lastSeq = seq;
    const kind = frame.headers.event || "message";
    if (kind === "edit" || kind === "delete") return updateMessage(m);
    if (kind === "reaction") return updateReactions(m.id, m.reactions);
    if (kind === "read") return onRead(m);
    if (kind !== "message") return;
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
      // Resume by event sequence once one is known (edits, deletes and reactions missed while away are
      // replayed too); before that, by message id as older clients do.
      const resume = state.lastSeq > 0 ? { "since-seq": String(state.lastSeq) } : { "since-id": String(state.newestId) };
      client.subscribe(topic, (frame) => {
        if (frame.headers["resume-gap"] || frame.headers["since-id-gap"] || frame.headers["since-seq-gap"]) catchUp().catch(() => {});
        onRoomMessage(frame);
      }, resume);
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

  function sendPayload(clientId, body, attachments, replyTo) {
    const payload = { body, client_id: clientId, attachments };
    if (replyTo) payload.reply_to = replyTo;
    return payload;
  }

  function publish(clientId, body, attachments = [], replyTo = null) {
    client.publish({
      destination: `/app/rooms.${slug}`,
      body: JSON.stringify(sendPayload(clientId, body, attachments, replyTo)),
      headers: { "content-type": "application/json", receipt: `send-${clientId}` },
    });
  }

  /** The server took this room from the user (removed by its owner, left on another tab, archived or deleted):
   * the page says so and stops: no more sends, no live connection that would subscribe again on a reconnect,
   * and no request about the room (Chat.roomGone). */
  function roomClosed(reason) {
    Chat.roomGone(reason);
    setStatus(reason, null);
    state.closed = true;
    client.deactivate();
    for (const control of el.form.querySelectorAll("textarea, button, input")) control.disabled = true;
    el.error.textContent = reason;
    el.error.hidden = false;
  }

  /** A SEND the server refused (empty, too long, not a member): the connection stays open. */
  function onSendError(error) {
    if ((error.code === "removed" || error.code === "room-closed") && error.room === slug) roomClosed(error.detail);
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
    for (const [clientId, item] of state.pending) {
      publish(clientId, item.dataset.body, JSON.parse(item.dataset.attachments), Number(item.dataset.replyTo) || null);
    }
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
    const reply = state.replyTo;
    const replyTo = reply ? reply.id : null;
    const item = messageItem({ author: ME, body, client_id: clientId, reply_to: reply });
    item.classList.add("pending");
    item.dataset.body = body;
    item.dataset.attachments = JSON.stringify(attachments);
    if (replyTo) item.dataset.replyTo = String(replyTo);
    clearEmptyNote();
    el.messages.append(item);
    state.pending.set(clientId, item);
    // Writing is reading: the divider has done its job once the user answers.
    state.dividerBefore = null;
    cancelReply();
    decorate();
    scrollToBottom();
    el.input.value = "";
    state.lastTypingSent = 0;
    if (client.connected) {
      publish(clientId, body, attachments, replyTo);
      return;
    }
    try { // not connected right now: the REST API stores it; the broadcast arrives when we are back
      appendMessages([await roomApi(`${roomPath}/messages/`, { method: "POST", json: sendPayload(clientId, body, attachments, replyTo) })]);
    } catch (error) {
      el.error.textContent = `Not sent: ${error.message}`;
      el.error.hidden = false;
    }
  });

  el.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.form.requestSubmit();
    } else if (event.key === "Escape" && state.replyTo) {
      cancelReply();
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
      await roomApi(`${roomPath}/join/`, { method: "POST" });
      refreshRooms();
    }
    await loadRoom();
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
  setInterval(refreshTimes, RELATIVE_TIME_EVERY_MS);
  document.addEventListener("chat:notification", refreshRooms);
  window.addEventListener("pagehide", () => client.deactivate());
})();
