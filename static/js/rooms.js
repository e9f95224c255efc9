/* rooms.js: the room list page. Lists rooms from the API with unread badges, creates rooms, joins
 * public ones, and opens direct-message rooms by name or from the user directory. Runs after global.js (deferred, base.html fixes the order)
 * and declares no globals. */
(function () {
  "use strict";
  const { api, h, USER } = window.Chat;
  const list = document.querySelector("[data-room-list]");
  if (!list) return;
  const REFRESH_MS = 30_000;

  const roomUrl = (slug) => `/rooms/${encodeURIComponent(slug)}/`;

  function unreadBadge(n) {
    return n > 0 ? h("span", { class: "badge", "data-unread": n }, String(n), h("span", { class: "visually-hidden" }, " unread")) : null;
  }

  function roomItem(room) {
    const joinButton = !room.is_member && !room.is_private
      ? h("button", { type: "button", class: "small", "data-join": room.slug, onclick: () => join(room) }, "Join")
      : null;
    return h("li", { "data-slug": room.slug },
      h("a", { href: roomUrl(room.slug) }, room.name),
      room.is_private && room.kind !== "direct" ? h("span", { class: "tag" }, "private") : null,
      unreadBadge(room.unread), joinButton);
  }

  function group(title, rooms, empty) {
    return h("li", { class: "group" },
      h("h2", {}, title),
      h("ul", {}, rooms.length ? rooms.map(roomItem) : h("li", { class: "muted" }, empty)));
  }

  async function render() {
    const { results } = await api("/api/rooms/");
    const mine = results.filter((r) => r.is_member && r.kind !== "direct");
    const direct = results.filter((r) => r.kind === "direct");
    const other = results.filter((r) => !r.is_member && r.kind !== "direct");
    list.replaceChildren(
      group("Your rooms", mine, "You have joined no room yet."),
      group("Direct messages", direct, "No conversations yet."),
      group("Other public rooms", other, "No other public rooms."));
    list.classList.add("grouped");
    const total = results.reduce((sum, r) => sum + (r.is_member ? r.unread : 0), 0);
    document.title = total ? `(${total}) Rooms · Chat` : "Rooms · Chat";
  }

  async function join(room) {
    await api(`/api/rooms/${encodeURIComponent(room.slug)}/join/`, { method: "POST" });
    window.location.assign(roomUrl(room.slug));
  }

  function showError(form, error) {
    const box = form.querySelector("[data-error]");
    const fields = error.body && error.body.errors;
    const detail = fields ? Object.values(fields).flat().join(" ") : error.message;
    box.textContent = detail || "Something went wrong.";
    box.hidden = false;
  }

  function handle(form, action) {
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelector("[data-error]").hidden = true;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await action(new FormData(form));
      } catch (error) {
        showError(form, error);
      } finally {
        button.disabled = false;
      }
    });
  }

  handle(document.querySelector("[data-create-room]"), async (data) => {
    const room = await api("/api/rooms/", {
      method: "POST", json: { name: data.get("name").trim(), is_private: data.get("is_private") === "on" },
    });
    window.location.assign(roomUrl(room.slug));
  });

  async function openDirect(username) {
    const room = await api(`/api/dms/${encodeURIComponent(username)}/`, { method: "POST" });
    window.location.assign(roomUrl(room.slug));
  }

  const dmForm = document.querySelector("[data-open-dm]");
  handle(dmForm, (data) => openDirect(data.get("username").trim()));

  // --- The user directory: people to start a conversation with, narrowed as a name is typed -----------

  const people = document.querySelector("[data-user-directory]");
  const morePeople = document.querySelector("[data-user-directory-more]");
  const peopleSearch = document.querySelector("[data-dm-search]");
  const PEOPLE_PAGE = 20;
  const SEARCH_DELAY_MS = 200;
  const directory = { q: "", next: null, seq: 0, timer: null };

  function personItem(user) {
    const open = async () => {
      try {
        await openDirect(user.username);
      } catch (error) {
        showError(dmForm, error);
      }
    };
    return h("li", { "data-user": user.username },
      h("button", { type: "button", class: "link", "aria-label": `Message ${user.username}`, onclick: open },
        user.username));
  }

  /** The first page for the typed prefix (more = false), or the next page of the same one (more = true). */
  async function loadPeople(more) {
    const seq = more ? directory.seq : ++directory.seq;  // a slow answer for an older prefix is dropped
    const query = { q: directory.q, limit: PEOPLE_PAGE, after: more ? directory.next : null };
    const { results, next_after: next } = await api("/api/users/", { query });
    if (seq !== directory.seq) return;
    const items = results.filter((u) => u.username !== USER).map(personItem);
    if (more) people.append(...items);
    else people.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, "Nobody by that name.")]));
    directory.next = next;
    morePeople.hidden = !next;
  }

  if (people && peopleSearch && morePeople) {
    peopleSearch.addEventListener("input", () => {
      clearTimeout(directory.timer);
      directory.timer = setTimeout(() => {
        directory.q = peopleSearch.value.trim();
        loadPeople(false).catch((error) => showError(dmForm, error));
      }, SEARCH_DELAY_MS);
    });
    morePeople.addEventListener("click", () => loadPeople(true).catch((error) => showError(dmForm, error)));
    loadPeople(false).catch(() => {});
  }

  const refresh = () => render().catch(() => {});
  refresh();
  setInterval(() => document.visibilityState === "visible" && refresh(), REFRESH_MS);
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && refresh());
  document.addEventListener("chat:notification", refresh);
})();
