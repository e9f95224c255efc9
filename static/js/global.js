/* global.js: configuration and authentication shared by every page. Loaded (deferred) after the client
 * libraries and before any page script; everything it offers lives on one namespace object, window.Chat,
 * so no page script can collide with it. */
(function () {
  "use strict";
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || null;
  const API_ORIGIN = meta("api-origin") || window.location.origin;
  const store = window.localStorage;
  const KEY = "chat.jwt";

  function tokens() {
    try { return JSON.parse(store.getItem(KEY)) || null; } catch (e) { return null; }
  }
  function saveTokens(pair) { store.setItem(KEY, JSON.stringify({ access: pair.access, refresh: pair.refresh })); }
  function clearTokens() { store.removeItem(KEY); }

  async function handover() {
    const code = meta("jwt-handover");
    if (!code) return;
    const response = await fetch(`${API_ORIGIN}/api/auth/handover/`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }),
    });
    if (response.ok) saveTokens(await response.json());
  }

  window.Chat = Object.freeze({ API_ORIGIN, tokens, saveTokens, clearTokens, ready: handover() });
})();
