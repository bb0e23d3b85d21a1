// The studio: a Telegram Mini App over the bot's /app/api (docs: README "Studio").
// Plain ES module, no build step. Everything from the server is put into the page as text
// (textContent, attributes), never as HTML, and the CSP forbids inline scripts and styles.

const TG = window.Telegram && window.Telegram.WebApp;
// /app/ whatever path PUBLIC_URL has: this file is /app/static/app.js.
const BASE = new URL("../", import.meta.url);
const PAGE = 30;
// How often a running series asks for its progress: 3 s, or `?refresh=<ms>` in the page's URL
// (bounded; the browser tests use a short one rather than waiting).
const REFRESH_MS = Math.min(60000, Math.max(250, Number(new URLSearchParams(location.search).get("refresh")) || 3000));
const MAX_REFRESHING = 6; // running series refreshed at once in the gallery
const WATCH_MS = 10 * 60 * 1000; // how long a series waits for a redone panel's new version
const FINAL = new Set(["done", "failed", "cancelled", "timed_out"]);

const state = {
  texts: {},
  lang: "en",
  user: null,
  chatUrl: null,
  stack: [], // views, the last one shown; BackButton pops it
  gallery: null, // the gallery drawn so far: {leave, resume, drop}
  timers: new Set(),
};

// ---- texts -----------------------------------------------------------------------------------

/** The person's text for the English `msgid`, `{name}` placeholders filled from `params`. */
export function t(msgid, params = {}) {
  const text = state.texts[msgid] || msgid;
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}

function dateText(unix) {
  try {
    return new Intl.DateTimeFormat(state.lang, { dateStyle: "medium", timeStyle: "short" }).format(
      new Date(unix * 1000),
    );
  } catch {
    return new Date(unix * 1000).toISOString().slice(0, 16).replace("T", " ");
  }
}

// ---- DOM -------------------------------------------------------------------------------------

/** An element: `h("p", {class: "x", onclick: f}, "text", child)`. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c);
  }
  return el;
}

/** An image that shows its alt text when it cannot load (an expired link, no network). */
function picture(url, alt, cls, eager = false) {
  const img = h("img", {
    src: url,
    alt: alt || "",
    class: cls,
    loading: eager ? "eager" : "lazy",
    decoding: "async",
  });
  img.addEventListener("error", () => img.classList.add("broken"), { once: true });
  return img;
}

const $ = (id) => document.getElementById(id);

function haptic(kind = "light") {
  const hf = TG && TG.HapticFeedback;
  if (!hf) return;
  try {
    if (kind === "select") hf.selectionChanged();
    else if (kind === "success" || kind === "error" || kind === "warning") hf.notificationOccurred(kind);
    else hf.impactOccurred(kind);
  } catch {
    /* an old client without haptics */
  }
}

let toastTimer = 0;
function toast(text, bad = false) {
  const el = $("toast");
  el.textContent = text;
  el.classList.toggle("bad", bad);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 4000);
}

function confirmed(text) {
  return new Promise((resolve) => {
    if (TG && typeof TG.showConfirm === "function" && TG.isVersionAtLeast && TG.isVersionAtLeast("6.2")) {
      try {
        TG.showConfirm(text, (ok) => resolve(Boolean(ok)));
        return;
      } catch {
        /* fall through to the browser's own */
      }
    }
    resolve(window.confirm(text));
  });
}

// ---- API -------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** JSON from /app/api/`path`, with the person's initData; errors as ApiError. */
async function api(path, options = {}, attempt = 0) {
  const headers = { Authorization: `tma ${(TG && TG.initData) || ""}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(`api/${path}`, BASE), {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network", t("No connection to the bot. Check your network and try again."));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    /* not JSON: a proxy's page */
  }
  if (response.ok && data) return data;
  const err = (data && data.error) || {};
  const code = err.code || (response.status === 401 ? "unauthorized" : "unavailable");
  if (code === "rate_limited" && attempt < 2 && (options.method || "GET") === "GET") {
    // Reads wait their turn; an action is never repeated on its own.
    const wait = Math.min(5, Number(response.headers.get("Retry-After")) || 1);
    await new Promise((r) => setTimeout(r, wait * 1000));
    return api(path, options, attempt + 1);
  }
  throw new ApiError(response.status, code, err.message || t("The studio is not available right now. Try again later."));
}

// ---- views -----------------------------------------------------------------------------------

function stopTimers() {
  for (const id of state.timers) clearInterval(id);
  state.timers.clear();
}

function every(ms, fn) {
  const id = setInterval(() => {
    if (document.visibilityState === "visible") fn();
  }, ms);
  state.timers.add(id);
  return id;
}

/** Show `view` ({name, id?}), pushed on the stack unless `replace`. */
function go(view, { replace = false } = {}) {
  if (replace) state.stack.pop();
  state.stack.push(view);
  render();
}

function back() {
  if (!$("viewer").hidden) return closeViewer();
  if (state.stack.length > 1) {
    state.stack.pop();
    haptic();
    render();
  }
}

function syncBackButton() {
  const bb = TG && TG.BackButton;
  if (!bb) return;
  if (state.stack.length > 1 || !$("viewer").hidden) bb.show();
  else bb.hide();
}

function render() {
  stopTimers();
  const view = state.stack[state.stack.length - 1];
  const main = $("view");
  if (main.dataset.view === "gallery" && state.gallery) state.gallery.leave();
  main.replaceChildren();
  main.dataset.view = view.name;
  for (const [tab, name] of [["tab-gallery", "gallery"], ["tab-cast", "cast"]]) {
    if (view.name === name) $(tab).setAttribute("aria-current", "page");
    else $(tab).removeAttribute("aria-current");
  }
  syncBackButton();
  window.scrollTo(0, 0);
  if (view.name === "gallery") showGallery(main);
  else if (view.name === "series") showSeries(main, view.id, view.panel || 0);
  else if (view.name === "cast") showCast(main);
  else if (view.name === "error") showError(main, view.error);
}

function showError(main, error) {
  main.dataset.view = "error";
  const expired = error.status === 401;
  const notFound = error.status === 404;
  const title = expired
    ? t("Open the studio from the bot again")
    : notFound
      ? t("This series is not here")
      : t("Something went wrong. Try again.");
  main.append(
    h("section", { class: "problem", "data-code": error.code },
      h("h2", { text: title }),
      h("p", { text: error.message }),
      expired && TG && TG.close ? h("button", { type: "button", class: "primary", onclick: () => TG.close(), text: t("Close") }) : null,
      !expired ? h("button", { type: "button", class: "primary", onclick: () => { haptic(); go({ name: "gallery" }); }, text: t("Back") }) : null,
    ),
  );
}

/** A view failed to load: 401 takes over the page, anything else replaces the current view. */
function failed(main, error) {
  if (!(error instanceof ApiError)) throw error;
  haptic("error");
  if (error.status === 401) {
    state.gallery = null;
    state.stack = [{ name: "error", error }];
    $("tabs").hidden = true;
    render();
  } else {
    main.replaceChildren();
    showError(main, error);
  }
}

// ---- gallery ---------------------------------------------------------------------------------

function stateBadge(item) {
  const running = !FINAL.has(item.status);
  const badge = h("span", { class: `state s-${item.status}`, text: item.state_text });
  if (running && typeof item.progress === "number") {
    const bar = h("span", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(item.progress * 100) });
    const fill = h("span", { class: "fill" });
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, item.progress)) * 100)}%`;
    bar.append(fill);
    return h("span", { class: "status" }, badge, bar);
  }
  return h("span", { class: "status" }, badge);
}

function metaLine(item) {
  const bits = [dateText(item.created_at), t("Panels: {n}", { n: item.count }), item.ratio];
  if (item.episode) bits.push(t("Episode {n}", { n: item.episode }));
  return h("span", { class: "meta" }, bits.filter(Boolean).join(" · "));
}

function card(item, eager) {
  const strip = h("span", { class: "strip" },
    item.thumbs.length
      ? item.thumbs.map((th) => picture(th.url, th.alt, "thumb", eager))
      : h("span", { class: "nothumb", text: item.state_text }),
  );
  const el = h("li", { class: "card", "data-id": item.id, "data-status": item.status },
    h("button", { type: "button", class: "open", onclick: () => { haptic(); go({ name: "series", id: item.id }); } },
      strip,
      h("span", { class: "caption" },
        h("span", { class: "title", text: item.title || t("Series #{id}", { id: item.id }) }),
        metaLine(item),
        stateBadge(item),
      ),
    ),
  );
  return el;
}

/** The gallery; kept when a series is opened, so that Back returns to the same place. */
function showGallery(main) {
  if (state.gallery) return state.gallery.resume(main);
  const list = h("ul", { class: "gallery", "aria-label": t("Your series") });
  const sentinel = h("p", { class: "more", text: t("Loading…") });
  // Scrolling loads the next page; the button is there for whoever does not scroll.
  const moreButton = () => h("button", { type: "button", class: "action", onclick: () => { haptic(); more(); }, text: t("Load more") });
  main.append(list, sentinel);
  let next = undefined; // undefined: first page not asked yet; null: no more
  let busy = false;
  const cards = new Map();

  async function more() {
    if (busy || next === null) return;
    busy = true;
    if (next !== undefined) sentinel.textContent = t("Loading…");
    try {
      const q = next === undefined ? `limit=${PAGE}` : `before=${encodeURIComponent(next)}&limit=${PAGE}`;
      const page = await api(`series?${q}`);
      const first = next === undefined;
      const frag = document.createDocumentFragment();
      page.items.forEach((item, i) => {
        if (cards.has(item.id)) return;
        const c = card(item, first && i < 6);
        cards.set(item.id, c);
        frag.append(c);
      });
      list.append(frag);
      if (first) performance.mark("studio:gallery"); // bench/studio.py times the first page by it
      next = page.next === undefined ? null : page.next;
      if (next === null) {
        observer.disconnect();
        sentinel.textContent = "";
        if (!cards.size) {
          sentinel.replaceChildren(
            h("span", { class: "empty", text: t("No series yet. Send /seq in the chat to make one.") }),
            state.chatUrl ? h("button", { type: "button", class: "primary", onclick: openChat, text: t("Open the chat") }) : null,
          );
        }
      } else {
        sentinel.replaceChildren(moreButton());
      }
    } catch (error) {
      observer.disconnect();
      state.gallery = null;
      failed(main, error);
      return;
    } finally {
      busy = false;
    }
    // A short first page on a tall screen: the sentinel is still in view, ask again.
    if (next !== null && sentinel.getBoundingClientRect().top < window.innerHeight * 2) more();
  }

  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { rootMargin: "600px 0px" });
  observer.observe(sentinel);
  more();

  // Running series update their state and progress until they end.
  const refresh = () => every(REFRESH_MS, async () => {
    const running = [...cards.values()].filter((c) => !FINAL.has(c.dataset.status)).slice(0, MAX_REFRESHING);
    for (const c of running) {
      try {
        const item = await api(`series/${c.dataset.id}`);
        const fresh = card(item, true);
        cards.set(item.id, fresh);
        c.replaceWith(fresh);
      } catch (error) {
        if (error.status === 404) {
          cards.delete(Number(c.dataset.id));
          c.remove();
        } else if (error.status === 401) {
          state.gallery = null;
          return failed(main, error);
        } else return; // try again at the next tick
      }
    }
  });
  refresh();

  // Series made while the person looked elsewhere (Again, Continue, a /seq in the chat) go on top.
  async function newest() {
    const page = await api(`series?limit=${PAGE}`);
    const known = Math.max(0, ...cards.keys());
    const fresh = page.items.filter((item) => item.id > known && !cards.has(item.id));
    for (const item of fresh.reverse()) {
      const c = card(item, true);
      cards.set(item.id, c);
      list.prepend(c);
    }
  }

  let scrollY = 0;
  state.gallery = {
    leave() {
      scrollY = window.scrollY;
    },
    resume(into) {
      into.append(list, sentinel);
      window.scrollTo(0, scrollY);
      refresh();
      newest().catch(() => {});
    },
    drop(id) {
      const c = cards.get(id);
      if (c) c.remove();
      cards.delete(id);
    },
  };
}

function openChat() {
  haptic();
  if (!state.chatUrl) return;
  if (TG && TG.openTelegramLink) TG.openTelegramLink(state.chatUrl);
  else window.open(state.chatUrl, "_blank", "noopener");
}

// ---- one series ------------------------------------------------------------------------------

function detailsList(s) {
  const rows = [
    [t("Prompt"), h("span", { class: "prompt", text: s.prompt })],
    [t("Size"), s.params && s.params.size],
    [t("Mode"), s.params && s.params.mode],
    [t("Seed"), s.params && s.params.seed !== null && s.params.seed !== undefined ? String(s.params.seed) : null],
    [t("Cost"), typeof s.cost === "number" ? `$${s.cost.toFixed(s.cost < 1 ? 3 : 2)}` : null],
    [t("Created"), dateText(s.created_at)],
  ];
  if (s.continues) {
    rows.push(["", h("button", { type: "button", class: "link", onclick: () => { haptic(); go({ name: "series", id: s.continues }); }, text: t("Continues job #{id}", { id: s.continues }) })]);
  }
  if (s.refs && s.refs.length) {
    rows.push([t("Reference images"), h("span", { class: "refs" }, s.refs.map((r) =>
      h("figure", { class: "ref" }, picture(r.thumb, r.name || t("Reference image"), "refthumb"), r.name ? h("figcaption", { text: r.name }) : null)))]);
  }
  if (s.error) rows.push([t("Error"), h("span", { class: "error", text: s.error })]);
  return h("dl", { class: "details" },
    rows.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

function showSeries(main, id, startPanel) {
  main.append(h("p", { class: "loading", text: t("Loading…") }));
  let current = startPanel;
  let shown = null; // the detail on screen, to redraw only what changed
  let watchUntil = 0; // a redo was asked: refresh until then, or until the new version is here

  async function load() {
    let s;
    try {
      s = await api(`series/${encodeURIComponent(id)}`);
    } catch (error) {
      stopTimers();
      return failed(main, error);
    }
    const versions = (x) => x.panels.map((p) => `${p.index}:${p.version}`).join();
    const same = shown && versions(shown) === versions(s) && shown.status === s.status &&
      shown.actions.join() === s.actions.join() && shown.progress === s.progress;
    if (same) return;
    // A redone panel is a new version: the slides are drawn again, at the same panel.
    const redraw = !shown || versions(shown) !== versions(s);
    if (shown && redraw) watchUntil = 0;
    shown = s;
    if (redraw) draw(s);
    else {
      main.querySelector(".head .status").replaceWith(stateBadge(s));
      main.querySelector(".actions").replaceWith(actionBar(s));
    }
  }

  function draw(s) {
    main.replaceChildren();
    const track = h("div", { class: "track", tabindex: 0, "aria-label": t("Panels") });
    s.panels.forEach((p, i) => {
      const text = p.text || s.prompt;
      const img = picture(p.thumb, text, "panel", i < 2);
      img.dataset.full = p.full;
      track.append(h("figure", { class: "slide", "data-index": p.index, "aria-label": t("Panel {n}", { n: i + 1 }) },
        h("button", { type: "button", class: "zoom", "aria-label": t("Full size"), onclick: () => { haptic(); openViewer(p.full, text); } }, img),
        h("figcaption", {}, h("b", { text: `${i + 1}. ` }), text),
      ));
    });
    const counter = h("span", { class: "counter" });
    const prev = h("button", { type: "button", class: "icon arrow", "aria-label": t("Previous"), onclick: () => step(-1), text: "‹" });
    const next = h("button", { type: "button", class: "icon arrow", "aria-label": t("Next"), onclick: () => step(1), text: "›" });
    main.append(
      h("div", { class: "head" },
        h("h2", { text: s.title || t("Series #{id}", { id: s.id }) }),
        h("p", { class: "meta" }, `#${s.id} · `, t("Panels: {n}", { n: s.count }), ` · ${s.ratio}`),
        stateBadge(s),
      ),
      s.panels.length ? h("div", { class: "viewerbox" }, track, h("div", { class: "nav" }, prev, counter, next)) : h("p", { class: "empty", text: s.state_text }),
      actionBar(s),
      h("details", { class: "more-info", open: true }, h("summary", { text: t("Details") }), detailsList(s)),
    );
    const slides = [...track.children];

    function mark(i) {
      current = Math.max(0, Math.min(slides.length - 1, i));
      counter.textContent = slides.length ? `${current + 1} / ${slides.length}` : "";
      prev.disabled = current === 0;
      next.disabled = current >= slides.length - 1;
      const view = state.stack[state.stack.length - 1];
      if (view && view.name === "series") view.panel = current;
      // The large picture for the panel in view and its neighbours; thumbnails elsewhere.
      for (const j of [current - 1, current, current + 1]) {
        const img = slides[j] && slides[j].querySelector("img");
        if (img && img.dataset.full && !img.dataset.upgraded) {
          img.dataset.upgraded = "1";
          const big = new Image();
          big.decoding = "async";
          big.onload = () => { img.src = big.src; };
          big.src = img.dataset.full;
        }
      }
      const bar = main.querySelector(".actions");
      if (bar) bar.querySelectorAll("[data-panel-label]").forEach((b) => {
        b.textContent = t(b.dataset.panelLabel, { n: current + 1 });
      });
    }

    function step(d) {
      const i = Math.max(0, Math.min(slides.length - 1, current + d));
      if (i === current) return;
      haptic("select");
      slides[i].scrollIntoView({ behavior: "smooth", block: "nearest", inline: "start" });
      mark(i);
    }

    // Swipes are the browser's own scroll snapping; the counter follows the panel in view.
    const seen = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting && e.intersectionRatio >= 0.6) {
          const i = slides.indexOf(e.target);
          if (i !== current) { mark(i); haptic("select"); }
        }
      }
    }, { root: track, threshold: [0.6] });
    slides.forEach((sl) => seen.observe(sl));
    track.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
      if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
    });
    mark(current);
    if (current > 0 && slides[current]) slides[current].scrollIntoView({ block: "nearest", inline: "start" });
  }

  function actionBar(s) {
    const panelNo = () => current + 1; // as people count; the API's panel index starts at 0
    const panelIndex = () => (s.panels[current] ? s.panels[current].index : current);
    const defs = {
      again: { label: t("Again") },
      continue: { label: t("Continue"), ask: { kind: "text", title: t("What happens next?"), same: false } },
      redo: { labelKey: "Redo panel {n}", ask: { kind: "text", title: t("New text for the panel (or leave it the same)"), same: true } },
      sheet: { label: t("Send sheet") },
      zip: { label: t("Send ZIP") },
      originals: { label: t("Send originals") },
      cast: { labelKey: "Use panel {n} as a character", ask: { kind: "name", title: t("Character name") } },
      hide: { label: t("Hide from the studio"), confirm: t("Hide this series from the studio? Its kept files are deleted too."), danger: true },
    };
    const bar = h("div", { class: "actions", role: "group", "aria-label": t("Actions") });
    for (const name of Object.keys(defs)) {
      if (!s.actions.includes(name)) continue;
      const d = defs[name];
      const b = h("button", {
        type: "button",
        class: d.danger ? "action danger" : "action",
        "data-action": name,
        "data-panel-label": d.labelKey || null,
        text: d.labelKey ? t(d.labelKey, { n: panelNo() }) : d.label,
        onclick: () => startAction(s, name, d, panelIndex(), b),
      });
      bar.append(b);
    }
    return bar;
  }

  async function startAction(s, name, d, panel, button) {
    haptic("medium");
    if (d.confirm && !(await confirmed(d.confirm))) return;
    if (d.ask) return askThen(s, name, d, panel, button);
    send(s, { action: name }, button);
  }

  function askThen(s, name, d, panel, button) {
    const old = main.querySelector("form.ask");
    if (old) old.remove();
    const field = d.ask.kind === "name"
      ? h("input", { name: "value", maxlength: 32, required: true, autocomplete: "off", "aria-label": d.ask.title })
      : h("textarea", { name: "value", rows: 3, maxlength: 600, required: !d.ask.same, "aria-label": d.ask.title });
    const form = h("form", { class: "ask", "data-action": name },
      h("label", { text: d.ask.title }), field,
      h("div", { class: "row" },
        d.ask.same ? h("button", { type: "button", onclick: () => { form.remove(); send(s, { action: name, panel, text: "same" }, button); }, text: t("Keep the same text") }) : null,
        h("button", { type: "button", onclick: () => form.remove(), text: t("Cancel") }),
        h("button", { type: "submit", class: "primary", text: t("Send") }),
      ),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = field.value.trim();
      if (!value) return;
      form.remove();
      const body = { action: name };
      if (name === "redo" || name === "cast") body.panel = panel;
      if (d.ask.kind === "name") body.name = value;
      else body.text = value;
      send(s, body, button);
    });
    button.closest(".actions").after(form);
    field.focus();
  }

  async function send(s, body, button) {
    button.disabled = true;
    try {
      const answer = await api(`series/${encodeURIComponent(s.id)}/action`, { method: "POST", body });
      haptic("success");
      toast(answer.message);
      if (body.action === "hide") {
        if (state.gallery) state.gallery.drop(s.id);
        state.stack = [{ name: "gallery" }];
        render();
      } else if (body.action === "redo" && answer.job_id) {
        // The new version shows here once made: watch the series a while, even if it is done.
        watchUntil = Date.now() + WATCH_MS;
      }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      haptic("error");
      if (error.status === 401) return failed(main, error);
      toast(error.message, true);
    } finally {
      button.disabled = false;
    }
  }

  load();
  every(REFRESH_MS, () => {
    if (shown && (!FINAL.has(shown.status) || Date.now() < watchUntil)) load();
  });
}

// ---- full size -------------------------------------------------------------------------------

function openViewer(url, text) {
  const v = $("viewer");
  const img = $("viewer-img");
  img.classList.remove("broken");
  img.alt = text || "";
  img.src = url;
  $("viewer-text").textContent = text || "";
  v.hidden = false;
  syncBackButton();
}

function closeViewer() {
  $("viewer").hidden = true;
  $("viewer-img").removeAttribute("src");
  syncBackButton();
}

// ---- cast ------------------------------------------------------------------------------------

async function showCast(main) {
  main.append(h("p", { class: "loading", text: t("Loading…") }));
  let data;
  try {
    data = await api("cast");
  } catch (error) {
    return failed(main, error);
  }
  main.replaceChildren();
  if (!data.items.length) {
    main.append(h("p", { class: "empty", text: t("No characters saved yet.") }));
    return;
  }
  const list = h("ul", { class: "cast", "aria-label": t("Cast") });
  for (const c of data.items) {
    const li = h("li", { class: "person", "data-id": c.id },
      h("span", { class: "strip" }, c.thumbs.map((u) => picture(u, c.name, "thumb"))),
      h("span", { class: "name", text: c.name }),
      h("button", {
        type: "button", class: "action danger", text: t("Remove"),
        onclick: async () => {
          haptic("medium");
          if (!(await confirmed(t("Remove this character?")))) return;
          try {
            await api(`cast/${encodeURIComponent(c.id)}`, { method: "DELETE" });
            haptic("success");
            li.remove();
            toast(t("{name} is removed from your cast.", { name: c.name }));
          } catch (error) {
            if (!(error instanceof ApiError)) throw error;
            if (error.status === 401) return failed(main, error);
            haptic("error");
            toast(error.message, true);
          }
        },
      }),
    );
    list.append(li);
  }
  main.append(list);
}

// ---- Telegram's look -------------------------------------------------------------------------

function applyTheme() {
  const root = document.documentElement;
  const params = (TG && TG.themeParams) || {};
  for (const [k, v] of Object.entries(params)) {
    if (typeof v === "string" && /^#[0-9a-f]{3,8}$/i.test(v)) {
      root.style.setProperty(`--tg-theme-${k.replace(/_/g, "-")}`, v);
    }
  }
  const scheme = (TG && TG.colorScheme) || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  root.dataset.scheme = scheme;
}

function applyViewport() {
  const root = document.documentElement;
  if (!TG) return;
  const px = (n) => `${Math.max(0, Number(n) || 0)}px`;
  if (TG.viewportStableHeight) root.style.setProperty("--app-height", px(TG.viewportStableHeight));
  for (const [name, inset] of [["safe", TG.safeAreaInset], ["content", TG.contentSafeAreaInset]]) {
    if (!inset) continue;
    for (const side of ["top", "bottom", "left", "right"]) {
      root.style.setProperty(`--app-${name}-${side}`, px(inset[side]));
    }
  }
}

/** The series the page was opened for: `?series=123` (a web_app button's URL) or
 * t.me/<bot>?startapp=s123 (Telegram passes it as start_param). */
function startView() {
  const query = new URLSearchParams(location.search).get("series");
  const p = TG && TG.initDataUnsafe && TG.initDataUnsafe.start_param;
  const m = (query && /^(\d{1,12})$/.exec(query)) || (typeof p === "string" && /^s(\d{1,12})$/.exec(p));
  return m ? { name: "series", id: Number(m[1]) } : null;
}

function labelStatic() {
  document.documentElement.lang = state.lang;
  document.title = t("Studio");
  $("heading").textContent = t("Studio");
  $("tab-gallery").textContent = t("Series");
  $("tab-cast").textContent = t("Cast");
  $("viewer-close").setAttribute("aria-label", t("Close"));
}

async function main() {
  applyTheme();
  applyViewport();
  if (TG) {
    try {
      TG.ready();
      TG.expand();
      TG.onEvent("themeChanged", applyTheme);
      TG.onEvent("viewportChanged", applyViewport);
      TG.onEvent("safeAreaChanged", applyViewport);
      TG.onEvent("contentSafeAreaChanged", applyViewport);
      TG.BackButton.onClick(back);
    } catch {
      /* an old client: the page still works with its own buttons */
    }
  }
  $("tab-gallery").addEventListener("click", () => { haptic(); state.stack = []; go({ name: "gallery" }); });
  $("tab-cast").addEventListener("click", () => { haptic(); state.stack = [{ name: "gallery" }]; go({ name: "cast" }); });
  $("viewer-close").addEventListener("click", () => { haptic(); closeViewer(); });
  $("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) closeViewer(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") back(); });

  try {
    const me = await api("me");
    state.texts = me.texts || {};
    state.lang = (me.user && me.user.lang) || "en";
    state.user = me.user;
    state.chatUrl = me.private_chat_url || null;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    labelStatic();
    state.stack = [{ name: "error", error }];
    render();
    return;
  }
  labelStatic();
  $("tabs").hidden = false;
  state.stack = [{ name: "gallery" }];
  const deep = startView();
  if (deep) state.stack.push(deep);
  render();
}

main();
