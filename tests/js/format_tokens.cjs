// format_tokens.cjs: static/js/format.js's parser under Node (node:test): the token tree for links,
// code, emphasis and hostile input. Run by tests/frontend/test_format_node.py.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { parse, plainText } = require("../../static/js/format.js");

const links = (tokens) => tokens.flatMap((t) => (t.type === "link" ? [t] : t.children ? links(t.children) : []));
const types = (tokens) => tokens.map((t) => (t.children ? { [t.type]: types(t.children) } : t.type));

test("only http and https become links", () => {
  const hostile = [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "[x](javascript:alert(1))", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)", "java\tscript:alert(1)", "<a href=javascript:alert(1)>x</a>", "file:///etc/passwd",
    "ftp://example.com/", "xhttp://example.com", "http://", "https:///nohost", "//example.com/x",
  ];
  for (const text of hostile) assert.deepEqual(links(parse(text)), [], text);
  const [link] = links(parse("see https://example.com/a_b?q=1&r=<2> now"));
  assert.equal(link.href, "https://example.com/a_b?q=1&r=");
  assert.deepEqual(links(parse("HTTP://Example.COM")).map((l) => l.href), ["http://example.com/"]);
});

test("a link never carries a quote or angle bracket into its href", () => {
  for (const text of ['http://a.example/"onmouseover="alert(1)', "http://a.example/<script>", "http://a.example/`x`"]) {
    const [link] = links(parse(text));
    assert.ok(link, text);
    assert.ok(!/["<>`]/.test(link.href), link.href);
    assert.match(link.href, /^http:\/\/a\.example\//);
  }
});

test("sentence punctuation and brackets around a link stay outside it", () => {
  assert.deepEqual(links(parse("(see https://example.org/a.)")).map((l) => l.text), ["https://example.org/a"]);
  assert.deepEqual(links(parse("https://en.wikipedia.org/wiki/Foo_(bar), ok")).map((l) => l.text),
    ["https://en.wikipedia.org/wiki/Foo_(bar)"]);
  assert.deepEqual(types(parse("**https://example.org/**")), [{ bold: ["link"] }]);
});

test("code is literal: HTML and markup inside code stay text", () => {
  const tokens = parse("```html\n<script>alert(1)</script> **not bold** http://x.example\n```\nand `<img src=x onerror=alert(1)>`");
  assert.deepEqual(tokens[0], { type: "codeblock", language: "html", text: "<script>alert(1)</script> **not bold** http://x.example" });
  assert.deepEqual(tokens.slice(1), [{ type: "text", text: "and " }, { type: "code", text: "<img src=x onerror=alert(1)>" }]);
  assert.deepEqual(parse("```unclosed <b>"), [{ type: "text", text: "```unclosed <b>" }]);
  assert.deepEqual(parse("`a` and `"), [{ type: "code", text: "a" }, { type: "text", text: " and `" }]);
});

test("bold and italics nest and never cross", () => {
  assert.deepEqual(types(parse("**bold *it* bold**")), [{ bold: ["text", { italic: ["text"] }, "text"] }]);
  assert.deepEqual(types(parse("_it **b**_")), [{ italic: ["text", { bold: ["text"] }] }]);
  assert.deepEqual(types(parse("***both***")), [{ bold: [{ italic: ["text"] }] }]);
  // Crossing markup: the inner unmatched opener is text again, nothing is lost.
  const crossed = parse("*a **b* c**");
  assert.equal(plainText(crossed), "a **b c**");
  assert.deepEqual(types(crossed), [{ italic: ["text"] }, "text"]);
});

test("ordinary text keeps its stars and underscores", () => {
  for (const text of ["snake_case_name", "2 * 3 * 4", "** **", "a*", "_", "__init__.py", "file_name_", "<b>x</b>"]) {
    assert.equal(plainText(parse(text)), text, text);
    assert.deepEqual(types(parse(text)).filter((t) => t !== "text"), [], text);
  }
});

test("nothing is lost or added: plain text of the tree is the input without markup", () => {
  assert.equal(plainText(parse("a **b** _c_ `d` https://e.example/ f")), "a b c d https://e.example/ f");
});

test("pathological input is linear", () => {
  const text = "*_".repeat(20_000) + "**`".repeat(5_000);
  const started = process.hrtime.bigint();
  parse(text);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.ok(ms < 2000, `${ms} ms`);
});
