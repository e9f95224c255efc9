/* members.js: the room page's members panel. Lists the members, lets the owner of a private room add
 * members (searching the user directory) and remove them, and lets anyone leave (except a direct
 * conversation). The server decides who may do what; the panel only offers what the room JSON says the
 * caller's role allows, and shows the server's refusal when it still says no. Runs after global.js
 * (deferred, listed in room.html) and declares no globals; every node is built with Chat.h (text only). */
(function () {
  "use strict";
  const { api, roomApi, leaveRoom, h, USER } = window.Chat;
  const root = document.querySelector("[data-room]");
  const panel = document.querySelector("[data-members]");
  if (!root || !panel) return;
  const slug = root.dataset.room;
  const base = `/api/rooms/${encodeURIComponent(slug)}`;
  const el = {
    list: panel.querySelector("[data-member-list]"),
    add: panel.querySelector("[data-member-add]"),
    search: panel.querySelector("[data-member-search]"),
    results: panel.querySelector("[data-member-results]"),
    leave: panel.querySelector("[data-leave-room]"),
    error: panel.querySelector("[data-members-error]"),
  };
  const REFRESH_MS = 30_000;
  const SEARCH_DELAY_MS = 200;
  const PRESENCE_SETTLE_MS = 500;
  const state = { room: null, members: [], searchTimer: null, searchSeq: 0 };

  const isOwner = () => state.room && state.room.role === "owner";
  const manages = () => isOwner() && state.room.is_private && state.room.kind !== "direct";

  function showError(error) {
    el.error.textContent = (error && error.message) || "Something went wrong.";
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.error.textContent = "";
  }

  function memberItem(member) {
    const removable = manages() && member.role !== "owner" && member.username !== USER;
    return h("li", { "data-member": member.username },
      h("span", { class: "member-name" }, member.username),
      member.role === "owner" ? h("span", { class: "tag" }, "owner") : null,
      member.username === USER ? h("span", { class: "muted" }, " (you)") : null,
      removable
        ? h("button", { type: "button", class: "small secondary", "data-remove": member.username,
                        "aria-label": `Remove ${member.username}`, onclick: () => remove(member.username) }, "Remove")
        : null);
  }

  function render() {
    el.list.replaceChildren(...(state.members.length
      ? state.members.map(memberItem)
      : [h("li", { class: "muted" }, "No members.")]));
    el.add.hidden = !manages();
    // A direct conversation always keeps its two people; a non-member has nothing to leave.
    el.leave.hidden = !state.room || state.room.kind === "direct" || !state.room.is_member;
  }

  // Every request about the room goes through roomApi: Leave (below) waits for those in flight, and none
  // goes out once the server has the leave (the room is a 404 for this user from then on).
  async function load() {
    const [room, members] = await Promise.all([roomApi(`${base}/`), roomApi(`${base}/members/`)]);
    state.room = room;
    state.members = members.results;
    render();
  }

  async function remove(username) {
    clearError();
    try {
      await roomApi(`${base}/members/${encodeURIComponent(username)}/`, { method: "DELETE" });
      await load();
    } catch (error) {
      showError(error);
    }
  }

  async function add(username) {
    clearError();
    try {
      await roomApi(`${base}/members/`, { method: "POST", json: { username } });
      el.search.value = "";
      el.results.replaceChildren();
      await load();
      el.search.focus();
    } catch (error) {
      showError(error);
    }
  }

  function resultItem(user) {
    return h("li", {},
      h("button", { type: "button", class: "link", "data-add": user.username,
                    "aria-label": `Add ${user.username}`, onclick: () => add(user.username) }, user.username));
  }

  async function search() {
    const q = el.search.value.trim();
    const seq = ++state.searchSeq;  // an older, slower answer must not replace a newer one
    if (!q) {
      el.results.replaceChildren();
      return;
    }
    try {
      const { results } = await api("/api/users/", { query: { q, limit: 8 } });
      if (seq !== state.searchSeq) return;
      const present = new Set(state.members.map((m) => m.username));
      const candidates = results.filter((u) => !present.has(u.username));
      el.results.replaceChildren(...(candidates.length
        ? candidates.map(resultItem)
        : [h("li", { class: "muted" }, results.length ? "Everyone found is a member already." : "No such user.")]));
    } catch (error) {
      showError(error);
    }
  }

  el.search.addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(search, SEARCH_DELAY_MS);
  });
  el.add.addEventListener("submit", (event) => {
    // Enter in the search box adds the only (or first) user found, as the list would on a click.
    event.preventDefault();
    const first = el.results.querySelector("[data-add]");
    if (first) add(first.dataset.add);
  });

  el.leave.addEventListener("click", async () => {
    const last = state.room && state.room.is_private && state.members.length <= 1;
    const question = last
      ? "You are the last member: leaving archives this room. Leave?"
      : `Leave ${state.room ? state.room.name : "this room"}?`;
    if (!window.confirm(question)) return;
    clearError();
    el.leave.disabled = true;
    try {
      await leaveRoom(() => api(`${base}/leave/`, { method: "POST" }));
      // Away at once: staying would re-join a public room through the page's live subscription.
      window.location.assign("/");
    } catch (error) {
      el.leave.disabled = false;
      showError(error);
    }
  });

  const refresh = () => load().catch(showError);
  refresh();
  setInterval(() => document.visibilityState === "visible" && refresh(), REFRESH_MS);
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && refresh());
  // Someone new online here (chat.js keeps the presence list) is often someone just added or just joined:
  // read the members again, a moment after the list settles.
  const presence = document.querySelector("[data-presence]");
  if (presence) {
    let timer = null;
    new MutationObserver(() => {
      clearTimeout(timer);
      timer = setTimeout(refresh, PRESENCE_SETTLE_MS);
    }).observe(presence, { childList: true });
  }
})();
