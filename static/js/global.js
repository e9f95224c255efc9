/* global.js: configuration, authentication and small DOM helpers shared by every page.
 *
 * base.html loads it (deferred) after the client libraries and before any page script, so deferred page
 * scripts always run after it. Everything it offers lives on one frozen namespace object, window.Chat;
 * page scripts are IIFEs that read Chat and declare no globals, so no redeclaration can happen.
 *
 * Configuration arrives as data, never as inline script: <meta name="api-origin">, <meta name="chat-user">
 * (the session's user), <meta name="jwt-handover"> (a one-time code after a form login) and
 * <meta name="csrf-token">.
 */
(function () {
  "use strict";

  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || null;
  const API_ORIGIN = (meta("api-origin") || window.location.origin).replace(/\/+$/, "");
  const USER = meta("chat-user");
  const KEY = "chat.jwt";
  // Refresh this long before the access token expires (or at 80 % of a shorter lifetime).
  const REFRESH_MARGIN_MS = 60_000;

  class ApiError extends Error {
    constructor(status, detail, body) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  // --- DOM helpers: text only, never HTML ------------------------------------------------------------

  /** h("li", {class: "x", "aria-label": "…", onclick: fn}, "text", child): builds an element; strings are text. */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function toast({ title, text, href, kind } = {}) {
    const box = document.getElementById("toasts");
    if (!box) return null;
    const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
    const body = href ? h("a", { href }, text || "") : h("span", {}, text || "");
    const item = h("div", { class: `toast${kind ? " toast-" + kind : ""}`, "data-kind": kind || null },
      title ? h("strong", {}, title) : null, body, close);
    close.addEventListener("click", () => item.remove());
    box.append(item);
    setTimeout(() => item.remove(), 12_000);
    return item;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  }

  // --- Tokens ----------------------------------------------------------------------------------------

  function tokens() {
    try {
      const pair = JSON.parse(window.localStorage.getItem(KEY));
      return pair && pair.access && pair.refresh ? pair : null;
    } catch (e) {
      return null;
    }
  }
  function saveTokens(pair, user) {
    window.localStorage.setItem(KEY, JSON.stringify({ access: pair.access, refresh: pair.refresh, user: user || USER }));
    scheduleRefresh();
    tokensChanged();
  }
  // Live connections (STOMP) re-authenticate with the new access token before the old one expires.
  function tokensChanged() {
    document.dispatchEvent(new CustomEvent("chat:tokens"));
  }
  function clearTokens() {
    window.localStorage.removeItem(KEY);
  }

  function expiresAt(jwt) {
    try {
      const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part));
      return { exp: claims.exp * 1000, iat: (claims.iat || claims.exp) * 1000 };
    } catch (e) {
      return { exp: 0, iat: 0 };
    }
  }
  function refreshDueAt(access) {
    const { exp, iat } = expiresAt(access);
    const lifetime = Math.max(exp - iat, 0);
    return exp - Math.min(REFRESH_MARGIN_MS, lifetime * 0.2);
  }

  async function postJSON(path, body) {
    const response = await fetch(API_ORIGIN + path, {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data && data.detail, data);
    return data;
  }

  /** A new hand-over code from the page origin (session + CSRF), for a session whose tokens are gone. */
  async function renewFromSession() {
    if (!USER) return false;
    const response = await fetch("/login/handover/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": meta("csrf-token") || "", Accept: "application/json" },
    });
    if (!response.ok) return false;
    const { code } = await response.json();
    const data = await postJSON("/api/auth/handover/", { code });
    saveTokens(data, data.user && data.user.username);
    return true;
  }

  // Tabs share one refresh token and the server rotates it (the old one is blacklisted), so refreshes
  // are serialised across tabs with a Web Lock; a tab that waited finds the new pair in storage.
  function withRefreshLock(fn) {
    return navigator.locks ? navigator.locks.request("chat.jwt.refresh", fn) : fn();
  }

  let refreshing = null;
  function refresh(seenAccess) {
    if (refreshing) return refreshing;
    refreshing = withRefreshLock(async () => {
      const current = tokens();
      if (current && current.access !== seenAccess && Date.now() < refreshDueAt(current.access)) return current;
      if (current) {
        try {
          const data = await postJSON("/api/auth/token/refresh/", { refresh: current.refresh });
          saveTokens({ access: data.access, refresh: data.refresh || current.refresh });
          return tokens();
        } catch (e) {
          if (!(e instanceof ApiError) || e.status !== 401) throw e;
        }
      }
      clearTokens();
      if (await renewFromSession()) return tokens();
      sessionEnded();
      return null;
    }).finally(() => {
      refreshing = null;
    });
    return refreshing;
  }

  let refreshTimer = null;
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const pair = tokens();
    if (!pair) return;
    const delay = Math.max(refreshDueAt(pair.access) - Date.now(), 0);
    refreshTimer = setTimeout(() => refresh(pair.access).catch(() => scheduleRefresh()), Math.min(delay, 2 ** 31 - 1));
  }

  /** A valid access token, refreshed first when it is (nearly) expired; null when signed out. */
  async function accessToken() {
    await ready;
    const pair = tokens();
    if (pair && Date.now() < refreshDueAt(pair.access)) return pair.access;
    const fresh = await refresh(pair && pair.access);
    return fresh ? fresh.access : null;
  }

  function sessionEnded() {
    clearTokens();
    if (USER) window.location.assign("/login/?next=" + encodeURIComponent(window.location.pathname));
  }

  async function signIn() {
    if (!USER) {
      clearTokens(); // signed out on this origin: no tokens may outlive the session
      return;
    }
    const code = meta("jwt-handover");
    if (code) {
      try {
        const data = await postJSON("/api/auth/handover/", { code });
        saveTokens(data, data.user && data.user.username);
        return;
      } catch (e) {
        if (!(e instanceof ApiError)) throw e; // the API is unreachable: a used code changes nothing
      }
    }
    const pair = tokens();
    if (pair && pair.user === USER) {
      scheduleRefresh();
      return;
    }
    clearTokens();
    if (!(await renewFromSession())) sessionEnded();
  }

  /** Why the API could not be used, in words a developer can act on (a CORS refusal looks like a network error). */
  function unreachable(error) {
    if (error instanceof ApiError) return `${API_ORIGIN} answered ${error.status}: ${error.message}`;
    const here = window.location.origin;
    if (here !== API_ORIGIN) {
      return `this page's origin ${here} is not allowed by the API at ${API_ORIGIN} (add it to FRONTEND_ORIGINS, ` +
        `or open the site at its configured address), or the API is unreachable (${error.message})`;
    }
    return `the API at ${API_ORIGIN} is unreachable (${error.message})`;
  }

  function start() {
    return signIn().catch((error) => {
      const text = unreachable(error);
      toast({ title: "Cannot reach the chat API", text, kind: "error" });
      // The placeholders ("Loading…") would otherwise wait forever.
      for (const placeholder of document.querySelectorAll(".muted.empty")) placeholder.textContent = text;
    });
  }
  const ready = start();

  // Another tab refreshed or logged out: follow it.
  window.addEventListener("storage", (event) => {
    if (event.key !== KEY) return;
    if (event.newValue) {
      scheduleRefresh();
      tokensChanged();
    }
    else if (USER) window.location.assign("/login/");
  });

  // --- The fetch wrapper -----------------------------------------------------------------------------

  /** Call the API with the JWT; a 401 refreshes once and retries. Resolves to parsed JSON (null on 204). */
  async function api(path, { method = "GET", json, query, signal } = {}) {
    let url = API_ORIGIN + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined) params.set(k, v);
      if ([...params].length) url += "?" + params;
    }
    for (let attempt = 0; ; attempt++) {
      const access = await accessToken();
      if (!access) throw new ApiError(401, "signed out");
      const headers = { Accept: "application/json", Authorization: `Bearer ${access}` };
      if (json !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(url, {
        method, headers, signal, credentials: "omit",
        body: json === undefined ? undefined : JSON.stringify(json),
      });
      if (response.status === 401 && attempt === 0) {
        await refresh(access);
        continue;
      }
      const data = response.status === 204 ? null : await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, data && data.detail, data);
      return data;
    }
  }

  // --- The room a page shows: requests about it, and leaving it ------------------------------------------
  // Several scripts of the room page ask the server about its room (messages, the read marker, the members
  // panel, mention completion), each on its own timers. Once the user has left, the room is a 404 for
  // them, so every such request goes through roomApi() and leaveRoom() orders them around the leave: it
  // waits for the ones in flight, holds any new one until the server has answered the leave, then drops
  // the held ones (the page is going away) or lets them go (the leave was refused). roomGone() says the
  // server took the room away (removed, archived, deleted): from then on every request about it is
  // refused here with the server's reason, none goes out.
  const roomRequests = { inflight: new Set(), leaving: null, gone: null };

  async function roomApi(path, options) {
    while (roomRequests.leaving) {
      if (await roomRequests.leaving) return new Promise(() => {}); // left: never answered, never sent
    }
    if (roomRequests.gone) throw roomRequests.gone;
    const request = api(path, options);
    const settled = request.then(() => {}, () => {});
    roomRequests.inflight.add(settled);
    settled.then(() => roomRequests.inflight.delete(settled));
    return request;
  }

  /** The server ended this user's place in the page's room (``reason``: its notice): stop asking about it. */
  function roomGone(reason) {
    roomRequests.gone = roomRequests.gone || new ApiError(404, reason || "this room is no longer yours", null);
  }

  /** Leaves the page's room: send() asks the server once nothing else about the room is in flight. */
  async function leaveRoom(send) {
    if (roomRequests.gone) throw roomRequests.gone;
    if (roomRequests.leaving) throw new Error("already leaving this room");
    let decide;
    roomRequests.leaving = new Promise((resolve) => { decide = resolve; });
    try {
      await Promise.all([...roomRequests.inflight]);
      const result = await send();
      decide(true); // roomRequests.leaving stays set: nothing about the room goes out from now on
      return result;
    } catch (error) {
      roomRequests.leaving = null;
      decide(false);
      throw error;
    }
  }

  // --- Logout: blacklist the refresh token at the API, then end the session ---------------------------

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-logout")) return;
    event.preventDefault();
    const pair = tokens();
    clearTokens();
    if (pair) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 5000);
      try {
        await fetch(API_ORIGIN + "/api/auth/logout/", {
          method: "POST", credentials: "omit", signal: controller.signal,
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${pair.access}` },
          body: JSON.stringify({ refresh: pair.refresh }),
        });
      } catch (e) {
        // The session still ends; the refresh token then simply runs out.
      } finally {
        clearTimeout(timer);
      }
    }
    form.submit();
  });

  // --- Drawers: panels that a button opens at phone width (app.css "Phone width") -------------------------
  // <button data-drawer-toggle aria-controls="id"> opens and closes <… id="id" data-drawer> (data-open);
  // Escape, a click outside and its [data-drawer-close] button close it. At desktop width the panels are
  // columns and the buttons are not shown, so nothing here changes the desktop page.
  // data-drawer-count="<selector>" keeps the count of the matching elements in the button's
  // [data-drawer-count-value] (the number of people online, say).

  function drawerButtons(panel) {
    return document.querySelectorAll(`[data-drawer-toggle][aria-controls="${CSS.escape(panel.id)}"]`);
  }
  function setDrawer(panel, open) {
    panel.toggleAttribute("data-open", open);
    for (const button of drawerButtons(panel)) button.setAttribute("aria-expanded", String(open));
  }
  function openDrawers() {
    return document.querySelectorAll("[data-drawer][data-open]");
  }

  function startDrawers() {
    for (const button of document.querySelectorAll("[data-drawer-toggle]")) {
      const panel = document.getElementById(button.getAttribute("aria-controls"));
      if (!panel) continue;
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        const open = !panel.hasAttribute("data-open");
        for (const other of openDrawers()) if (other !== panel) setDrawer(other, false);
        setDrawer(panel, open);
        if (open) (panel.querySelector("a, button:not([data-drawer-close])") || panel).focus?.();
      });
      const selector = button.getAttribute("data-drawer-count");
      const value = button.querySelector("[data-drawer-count-value]");
      if (selector && value) {
        const update = () => {
          const count = document.querySelectorAll(selector).length;
          value.textContent = count ? String(count) : "";
        };
        new MutationObserver(update).observe(panel, { childList: true, subtree: true });
        update();
      }
    }
    for (const close of document.querySelectorAll("[data-drawer-close]")) {
      const panel = close.closest("[data-drawer]");
      close.addEventListener("click", () => {
        setDrawer(panel, false);
        drawerButtons(panel)[0]?.focus();
      });
    }
    document.addEventListener("click", (event) => {
      for (const panel of openDrawers()) if (!panel.contains(event.target)) setDrawer(panel, false);
    });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      for (const panel of openDrawers()) {
        setDrawer(panel, false);
        drawerButtons(panel)[0]?.focus();
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startDrawers);
  else startDrawers();

  window.Chat = Object.freeze({
    API_ORIGIN, USER, ApiError, ready, api, roomApi, leaveRoom, roomGone, accessToken, tokens, saveTokens, clearTokens,
    h, toast, formatTime,
  });
})();
