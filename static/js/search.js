/* search.js: the search page. Reads the form (q, room, from, before), calls GET /api/search/ and lists the
 * results newest first with "More results" (cursor pagination); each one links to its room opened at that
 * message (?message=<id>). Matches come from the API as {text, match} pieces and become text nodes and
 * <mark> elements: no HTML is ever built from message text. Runs after global.js (deferred, base.html fixes
 * the order) and declares no globals. */
(function () {
  "use strict";
  const { api, h } = window.Chat;
  const root = document.querySelector("[data-search]");
  if (!root) return;

  const el = {
    form: root.querySelector("[data-search-form]"),
    room: root.querySelector("[data-search-room]"),
    results: root.querySelector("[data-search-results]"),
    more: root.querySelector("[data-search-more]"),
    status: root.querySelector("[data-search-status]"),
    error: root.querySelector("[data-search-error]"),
  };
  const state = { params: null, cursor: null };

  const roomUrl = (slug, id) => `/rooms/${encodeURIComponent(slug)}/?message=${encodeURIComponent(id)}`;

  function highlighted(pieces) {
    return pieces.map((piece) => (piece.match ? h("mark", {}, piece.text) : document.createTextNode(piece.text)));
  }

  function resultItem(hit) {
    return h("li", { class: "search-hit", "data-id": hit.id },
      h("div", { class: "meta" },
        h("a", { href: roomUrl(hit.room, hit.id), "data-open": hit.id }, hit.room_name),
        " · ", h("strong", { class: "author" }, hit.author),
        " · ", h("time", { datetime: hit.created }, Chat.formatTime(hit.created))),
      h("p", { class: "body" }, highlighted(hit.highlight)));
  }

  function showError(text) {
    el.error.textContent = text || "";
    el.error.hidden = !text;
  }

  async function run(params, cursor) {
    showError("");
    el.more.disabled = true;
    try {
      const page = await api("/api/search/", { query: { ...params, cursor } });
      if (!cursor) el.results.replaceChildren();
      el.results.append(...page.results.map(resultItem));
      state.cursor = page.next_cursor;
      el.more.hidden = !page.next_cursor;
      const shown = el.results.children.length;
      el.status.textContent = shown ? `${shown}${page.next_cursor ? "+" : ""} message${shown === 1 ? "" : "s"} found.` : "No message found.";
    } catch (error) {
      showError(error.message);
      el.status.textContent = "";
    } finally {
      el.more.disabled = false;
    }
  }

  function formParams() {
    const data = new FormData(el.form);
    const params = {};
    for (const name of ["q", "room", "from", "before"]) {
      const value = String(data.get(name) || "").trim();
      if (value) params[name] = value;
    }
    return params;
  }

  /** The URL carries the search (so Back and a shared link show the same results). */
  function fillForm(params) {
    for (const [name, value] of params) {
      const field = el.form.elements.namedItem(name);
      if (field) field.value = value;
    }
  }

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.params = formParams();
    history.replaceState(null, "", `?${new URLSearchParams(state.params)}`);
    run(state.params, null);
  });
  el.more.addEventListener("click", () => state.cursor && run(state.params, state.cursor));

  async function start() {
    await Chat.ready;
    const rooms = await api("/api/rooms/");
    el.room.append(...rooms.results.filter((r) => r.is_member).map((r) => h("option", { value: r.slug }, r.name)));
    const fromUrl = new URLSearchParams(window.location.search);
    fillForm(fromUrl);
    if (fromUrl.get("q")) {
      state.params = formParams();
      run(state.params, null);
    }
  }
  start().catch((error) => showError(error.message));
})();
