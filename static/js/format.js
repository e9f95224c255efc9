/* format.js: message text to DOM nodes. Links (http/https only), `inline code`, ``` code blocks,
 * **bold** and *italics* / _italics_, built with createElement and text nodes only: user text never
 * becomes HTML, whatever it contains.
 *
 * Two pure steps, so both can be tested without a page: parse(text) returns a token tree
 * ({type: "text"|"link"|"code"|"codeblock"|"bold"|"italic", text?, href?, children?}) and
 * render(tokens, document) builds a DocumentFragment from it. Loaded (deferred) before chat.js, which
 * reads window.ChatFormat; global.js's Chat namespace is frozen, so the formatter has its own frozen
 * object. Under Node (the tests) the same object is module.exports.
 */
(function (root) {
  "use strict";

  // Message bodies are bounded by the server (max_length), but emphasis runs are still matched with a
  // stack in one pass, so hostile input like "*_*_*_…" costs linear time, not backtracking.
  const FENCE = "```";
  const URL_START = /https?:\/\/(?=[^\s\/<>"`])/iy;
  const URL_BODY = /[^\s<>"`]+/y;
  const TRAILING_PUNCTUATION = /[.,;:!?'*_~]+$/;
  const LANGUAGE_LINE = /^[A-Za-z0-9_+.#-]{1,20}\n/;
  const WORD = /[\p{L}\p{N}]/u;
  const SPACE = /\s/u;
  // Deeper nesting is never meant; the cap also bounds the stack scans on hostile input.
  const MAX_NESTING = 8;

  /** The text as a token tree: code blocks first (their content is literal), then the inline markup. */
  function parse(text) {
    const source = String(text ?? "");
    const tokens = [];
    let at = 0;
    for (;;) {
      const open = source.indexOf(FENCE, at);
      const close = open < 0 ? -1 : source.indexOf(FENCE, open + FENCE.length);
      if (close < 0) break; // an unclosed fence is just text
      if (open > at) tokens.push(...parseInline(source.slice(at, open)));
      let code = source.slice(open + FENCE.length, close);
      let language = null;
      const label = LANGUAGE_LINE.exec(code);
      if (label) {
        language = label[0].slice(0, -1);
        code = code.slice(label[0].length);
      }
      code = code.replace(/^\n/, "").replace(/\n$/, "");
      tokens.push(language ? { type: "codeblock", text: code, language } : { type: "codeblock", text: code });
      at = close + FENCE.length;
      if (source[at] === "\n") at += 1; // the block is its own line: no blank line after it
    }
    if (at < source.length) tokens.push(...parseInline(source.slice(at)));
    return tokens;
  }

  /** A URL starting at `at` (http/https, the scheme checked again by URL()), or null. */
  function linkAt(text, at) {
    URL_START.lastIndex = at;
    if (!URL_START.test(text)) return null;
    if (at > 0 && WORD.test(text[at - 1])) return null; // "xhttp://…" is not a link
    URL_BODY.lastIndex = at;
    let raw = URL_BODY.exec(text)[0];
    // Sentence punctuation and closing markup after a URL belong to the sentence: "see http://x.org."
    for (;;) {
      const trimmed = raw.replace(TRAILING_PUNCTUATION, "");
      const unbalanced = trimmed.endsWith(")") && count(trimmed, "(") < count(trimmed, ")");
      const next = unbalanced ? trimmed.slice(0, -1) : trimmed;
      if (next === raw) break;
      raw = next;
    }
    let url;
    try {
      url = new URL(raw);
    } catch (e) {
      return null;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    if (!url.hostname) return null;
    return { token: { type: "link", href: url.href, text: raw }, end: at + raw.length };
  }

  function count(text, char) {
    return text.split(char).length - 1;
  }

  /** Delimiters of emphasis, with whether they may open or close (flanking, as in Markdown). */
  function delimiterAt(text, at) {
    const char = text[at];
    if (char !== "*" && char !== "_") return null;
    if (char === "_" && (text[at + 1] === "_" || text[at - 1] === "_")) {
      // "__init__", "____": runs of underscores are names and rules, never emphasis.
      let end = at;
      while (text[end] === "_") end += 1;
      return { delim: text.slice(at, end), canOpen: false, canClose: false, end };
    }
    let delim = char === "*" && text[at + 1] === "*" ? "**" : char;
    // "***x***": open as ** then *, close as * then **, so the two nest instead of crossing.
    if (text.startsWith("***", at) && (at === 0 || text[at - 1] !== "*")) {
      const runBefore = at > 0 ? text[at - 1] : "";
      const runAfter = text[at + 3] || "";
      const closesOnly = runBefore !== "" && !SPACE.test(runBefore) && (runAfter === "" || SPACE.test(runAfter) || !WORD.test(runAfter));
      if (closesOnly) delim = "*";
    }
    const before = at > 0 ? text[at - 1] : "";
    const after = text[at + delim.length] || "";
    let canOpen = after !== "" && !SPACE.test(after);
    let canClose = before !== "" && !SPACE.test(before);
    if (char === "_") {
      // snake_case_names stay as they are: "_" only counts at word edges.
      canOpen = canOpen && !(before && WORD.test(before));
      canClose = canClose && !(after && WORD.test(after));
    }
    return { delim, canOpen, canClose, end: at + delim.length };
  }

  /** Inline markup of text without code blocks: a flat scan into text, code, links and delimiters,
   * then a stack matches each closing delimiter to the nearest open one of its kind. */
  function parseInline(text) {
    const items = [];
    let plain = "";
    const flush = () => {
      if (plain) items.push({ type: "text", text: plain });
      plain = "";
    };
    let at = 0;
    while (at < text.length) {
      const char = text[at];
      if (char === "`") {
        const close = text.indexOf("`", at + 1);
        // Inline code stays on one line (a newline inside is checked over the span only: linear).
        if (close > at + 1 && !text.slice(at + 1, close).includes("\n")) {
          flush();
          items.push({ type: "code", text: text.slice(at + 1, close) });
          at = close + 1;
          continue;
        }
      } else if (char === "h" || char === "H") {
        const link = linkAt(text, at);
        if (link) {
          flush();
          items.push(link.token);
          at = link.end;
          continue;
        }
      } else {
        const delimiter = delimiterAt(text, at);
        if (delimiter && (delimiter.canOpen || delimiter.canClose)) {
          flush();
          items.push({ type: "delimiter", delim: delimiter.delim, canOpen: delimiter.canOpen, canClose: delimiter.canClose });
          at = delimiter.end;
          continue;
        }
        if (delimiter) {
          plain += delimiter.delim;
          at = delimiter.end;
          continue;
        }
      }
      plain += char;
      at += 1;
    }
    flush();
    return matchEmphasis(items);
  }

  function matchEmphasis(items) {
    const rootFrame = { delim: null, children: [] };
    const stack = [rootFrame];
    const top = () => stack[stack.length - 1];
    // An opener that found no closer is literal text again, its content kept in place.
    const dissolve = (frame) => {
      const parent = top();
      appendText(parent.children, frame.delim);
      for (const child of frame.children) appendNode(parent.children, child);
    };
    for (const item of items) {
      if (item.type !== "delimiter") {
        appendNode(top().children, item);
        continue;
      }
      const match = item.canClose ? findOpen(stack, item.delim) : -1;
      if (match > 0 && stack[match].children.length) {
        while (stack.length - 1 > match) dissolve(stack.pop());
        const frame = stack.pop();
        appendNode(top().children, { type: item.delim === "**" ? "bold" : "italic", children: frame.children });
      } else if (item.canOpen && stack.length <= MAX_NESTING) {
        stack.push({ delim: item.delim, children: [] });
      } else {
        appendText(top().children, item.delim);
      }
    }
    while (stack.length > 1) dissolve(stack.pop());
    return rootFrame.children;
  }

  function findOpen(stack, delim) {
    for (let i = stack.length - 1; i > 0; i -= 1) if (stack[i].delim === delim) return i;
    return -1;
  }

  function appendText(list, text) {
    appendNode(list, { type: "text", text });
  }
  function appendNode(list, node) {
    const last = list[list.length - 1];
    if (node.type === "text" && last && last.type === "text") last.text += node.text;
    else list.push(node.type === "text" ? { type: "text", text: node.text } : node);
  }

  /** DOM nodes for a token tree: only these elements, only text content, only these attributes. */
  function render(tokens, doc) {
    const d = doc || root.document;
    const fragment = d.createDocumentFragment();
    for (const token of tokens) fragment.append(renderToken(token, d));
    return fragment;
  }

  function renderToken(token, d) {
    switch (token.type) {
      case "link": {
        const a = d.createElement("a");
        // Checked once more where it becomes an attribute: nothing but http(s) is ever a link.
        if (!/^https?:\/\//i.test(token.href)) return d.createTextNode(token.text);
        a.href = token.href;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
        a.textContent = token.text;
        return a;
      }
      case "code": {
        const code = d.createElement("code");
        code.textContent = token.text;
        return code;
      }
      case "codeblock": {
        const pre = d.createElement("pre");
        const code = d.createElement("code");
        if (token.language) code.dataset.language = token.language;
        code.textContent = token.text;
        pre.append(code);
        return pre;
      }
      case "bold":
      case "italic": {
        const node = d.createElement(token.type === "bold" ? "strong" : "em");
        node.append(render(token.children, d));
        return node;
      }
      default:
        return d.createTextNode(token.text || "");
    }
  }

  /** Plain text of a token tree (reply quotes, titles). */
  function plainText(tokens) {
    return tokens.map((t) => (t.children ? plainText(t.children) : t.text || "")).join("");
  }

  const api = Object.freeze({ parse, render, plainText, format: (text, doc) => render(parse(text), doc) });
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.ChatFormat = api;
})(typeof window === "undefined" ? globalThis : window);
