// markdown.js: message text as safe markdown (vendored, pinned `marked` and `DOMPurify`).
// Raw HTML in a message is shown as text, never parsed; what marked makes is then sanitized by
// DOMPurify: only http(s) and mailto links survive (a javascript: link loses its href), no
// images, forms or styles, and links open in a new tab without a referrer.
import { Marked } from "./vendor/marked/marked.esm.js";
import DOMPurify from "./vendor/dompurify/purify.es.mjs";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

const marked = new Marked({
  gfm: true,
  breaks: true, // a chat's single newline is a line break
  async: false,
  renderer: {
    html: ({ text }) => escapeHtml(text), // raw HTML is text
    br: () => "<br>\n", // keeps the newline in textContent (copy, search, tests)
  },
});

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select", "svg", "math"],
  FORBID_ATTR: ["style", "class", "id"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
};

/** `text` as a DocumentFragment of sanitized markdown. */
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(marked.parse(text).trim(), PURIFY);
  for (const link of fragment.querySelectorAll("a")) {
    if (!link.hasAttribute("href")) continue;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
  }
  return fragment;
}
