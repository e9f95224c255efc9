/* autocomplete.js: "@" completion of the room's member names in the message box (#message-input).
 *
 * Typing "@" and the start of a name lists the matching members under the box; ArrowDown/ArrowUp move,
 * Enter or Tab put "@name " in place of what was typed, Escape closes the list. While the list is open,
 * those keys are taken in the capture phase on the form, before chat.js's own Enter-to-send on the
 * textarea sees them. Members come from GET /api/rooms/<slug>/members/ (read again now and then, so new
 * members appear). Runs after global.js (deferred, listed in room.html) and declares no globals. */
(function () {
  "use strict";
  const { roomApi, h, USER } = window.Chat;
  const root = document.querySelector("[data-room]");
  const input = document.getElementById("message-input");
  if (!root || !input || !input.form) return;
  const slug = root.dataset.room;
  const MAX_SHOWN = 8;
  const MEMBERS_FRESH_MS = 30_000;
  // The name being typed: "@" at the start or after a space or punctuation (not inside an e-mail address),
  // then name characters (the ones the server's mention parser takes) up to the caret.
  const TYPED = /(?:^|[^\w@])@([\w.+-]*)$/u;

  const list = h("ul", { id: "mention-suggestions", class: "mention-suggestions", role: "listbox",
                         "aria-label": "Members to mention", hidden: true });
  input.form.before(list);
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");

  const state = { names: [], loadedAt: 0, loading: null, shown: [], active: 0, start: -1 };

  function members() {
    const fresh = Date.now() - state.loadedAt < MEMBERS_FRESH_MS;
    if (fresh || state.loading) return state.loading || Promise.resolve(state.names);
    state.loading = roomApi(`/api/rooms/${encodeURIComponent(slug)}/members/`)
      .then(({ results }) => {
        state.names = results.map((m) => m.username).filter((name) => name !== USER);
        state.loadedAt = Date.now();
        return state.names;
      })
      .catch(() => state.names)  // offline or no longer a member: complete from what we had
      .finally(() => { state.loading = null; });
    return state.loading;
  }

  function close() {
    list.hidden = true;
    list.replaceChildren();
    state.shown = [];
    state.start = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    state.active = (index + state.shown.length) % state.shown.length;
    list.querySelectorAll("[role=option]").forEach((option, i) => {
      option.setAttribute("aria-selected", i === state.active ? "true" : "false");
      if (i === state.active) {
        input.setAttribute("aria-activedescendant", option.id);
        option.scrollIntoView({ block: "nearest" });
      }
    });
  }

  function pick(index) {
    const name = state.shown[index];
    if (name === undefined || state.start < 0) return;
    const caret = input.selectionStart;
    const before = input.value.slice(0, state.start);
    const after = input.value.slice(caret);
    const inserted = `@${name} `;
    input.value = before + inserted + after.replace(/^ /, "");
    const at = before.length + inserted.length;
    input.setSelectionRange(at, at);
    close();
    input.focus();
    // chat.js (typing indicator) and anything else listening learn the value changed.
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function show(names, start) {
    state.shown = names;
    state.start = start;
    list.replaceChildren(...names.map((name, i) =>
      h("li", { id: `mention-option-${i}`, role: "option", "data-mention": name, "aria-selected": "false",
                // mousedown, not click: the textarea must keep its focus and caret.
                onmousedown: (event) => { event.preventDefault(); pick(i); } },
        "@", h("strong", {}, name))));
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    highlight(0);
  }

  async function update() {
    if (input.selectionStart !== input.selectionEnd) return close();
    const typed = TYPED.exec(input.value.slice(0, input.selectionStart));
    if (!typed) return close();
    const prefix = typed[1].toLowerCase();
    const start = input.selectionStart - typed[1].length - 1;
    const names = await members();
    // The box may have changed while the member list loaded: answer only for what is typed now.
    const now = TYPED.exec(input.value.slice(0, input.selectionStart));
    if (!now || now[1].toLowerCase() !== prefix) return;
    const matches = names.filter((name) => name.toLowerCase().startsWith(prefix))
      .sort((a, b) => a.localeCompare(b)).slice(0, MAX_SHOWN);
    if (matches.length) show(matches, start);
    else close();
  }

  input.addEventListener("input", update);
  input.addEventListener("click", update);
  input.addEventListener("blur", () => setTimeout(close, 0));
  input.form.addEventListener("keydown", (event) => {
    if (event.target !== input || list.hidden || event.isComposing) return;
    const keys = {
      ArrowDown: () => highlight(state.active + 1),
      ArrowUp: () => highlight(state.active - 1),
      Enter: () => pick(state.active),
      Tab: () => pick(state.active),
      Escape: close,
    };
    const action = keys[event.key];
    if (!action || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    event.stopPropagation();  // capture phase on the form: chat.js's Enter-to-send never sees it
    action();
  }, true);
})();
