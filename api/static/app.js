/* vnsearch web page: search, filter, page through and read passages in their document. */
"use strict";

const TOPICS = [
  ["ideology", "Tư tưởng"],
  ["organisation", "Tổ chức"],
  ["inspection", "Kiểm tra"],
  ["mass_mobilisation", "Dân vận"],
  ["anti_corruption", "Nội chính/PCTN"],
  ["other", "Khác"],
];
const TOPIC_LABEL = Object.fromEntries(TOPICS);
const MODE_LABEL = { hybrid: "Kết hợp", dense: "Ngữ nghĩa", lexical: "Từ khoá" };
const PAGE_SIZE = 10;
const MAX_OFFSET = 10000;
const CONTEXT_START = 3;
const CONTEXT_STEP = 4;
const CONTEXT_MAX = 20;
const EXAMPLES = [
  "kỷ luật đảng viên",
  "ket nap dang vien moi",
  "phòng, chống tham nhũng",
  "tiếp xúc đối thoại với nhân dân",
  "công tác cán bộ",
  "tu tuong chinh tri",
];
const DEFAULTS = { q: "", mode: "hybrid", topic: "", doc: "", section: "", page: 1, p: "" };

const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"),
  q: $("q"),
  topics: $("topic-list"),
  doc: $("doc-filter"),
  section: $("section-filter"),
  status: $("status"),
  hits: $("hits"),
  pager: $("pager"),
  info: $("index-info"),
  results: $("results"),
  reader: $("reader"),
  readerPanel: $("reader-panel"),
  readerTitle: $("reader-title"),
  readerPath: $("reader-path"),
  readerBody: $("reader-body"),
};

let state = { ...DEFAULTS };
let topicCounts = null;
let totalPassages = null;
let searchController = null;
let readerController = null;
let readerContext = CONTEXT_START;
let readerReturnFocus = null;

/* -- URL <-> state ------------------------------------------------------------------------ */

function readUrl() {
  const params = new URLSearchParams(location.search);
  const next = { ...DEFAULTS };
  for (const key of ["q", "mode", "topic", "doc", "section", "p"]) {
    if (params.has(key)) next[key] = params.get(key);
  }
  if (!(next.mode in MODE_LABEL)) next.mode = DEFAULTS.mode;
  if (next.topic && !(next.topic in TOPIC_LABEL)) next.topic = "";
  const page = parseInt(params.get("page") || "1", 10);
  next.page = Number.isFinite(page) && page > 0 ? page : 1;
  return next;
}

function urlFor(s) {
  const params = new URLSearchParams();
  for (const key of ["q", "mode", "topic", "doc", "section", "page", "p"]) {
    if (String(s[key]) !== String(DEFAULTS[key])) params.set(key, s[key]);
  }
  const query = params.toString();
  return query ? `/?${query}` : "/";
}

function commit(changes, { push = true } = {}) {
  state = { ...state, ...changes };
  const url = urlFor(state);
  if (url !== location.pathname + location.search) {
    history[push ? "pushState" : "replaceState"]({ reader: Boolean(state.p) }, "", url);
  }
}

/* -- helpers ------------------------------------------------------------------------------ */

const number = (n) => Number(n).toLocaleString("vi-VN");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "html") node.innerHTML = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function escapeHtml(text) {
  return text.replace(
    /[&<>"']/g,
    (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch],
  );
}

/** Accent-folded lower case, as the server folds queries typed without diacritics. */
function fold(text) {
  return text
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[đĐ]/g, "d")
    .toLowerCase();
}

/** Escape `text` and wrap the words of `query` in <mark> (accent-insensitive if it has none). */
function markWords(text, query) {
  const words = (query.normalize("NFC").match(/[\p{L}\p{N}]+/gu) || []).map((w) => w.toLowerCase());
  if (!words.length) return escapeHtml(text);
  const accented = words.some((w) => fold(w) !== w);
  const key = accented ? (w) => w.toLowerCase() : fold;
  const wanted = new Set(words.map(key));
  return text
    .normalize("NFC")
    .split(/(\s+)/)
    .map((token) => {
      const match = token.match(/^([^\p{L}\p{N}]*)(.*?)([^\p{L}\p{N}]*)$/u);
      if (!match || !match[2] || !wanted.has(key(match[2]))) return escapeHtml(token);
      return `${escapeHtml(match[1])}<mark>${escapeHtml(match[2])}</mark>${escapeHtml(match[3])}`;
    })
    .join("");
}

/** Glob-escape a document path so that the `doc` filter matches exactly that document. */
function globEscape(path) {
  return path.replace(/[[*?]/g, (ch) => `[${ch}]`);
}

function sectionPath(section) {
  const parts = (section || "").split(" > ").filter(Boolean);
  const nodes = [];
  parts.forEach((part, i) => {
    if (i) nodes.push(el("span", { class: "sep", "aria-hidden": "true" }, "›"));
    nodes.push(el("span", {}, part));
  });
  return nodes;
}

function topicBadge(topic, scores) {
  if (!topic) return null;
  const score = scores && scores[topic] !== undefined ? ` · ${Math.round(scores[topic] * 100)}%` : "";
  return el(
    "span",
    {
      class: `badge t-${topic}`,
      title: `Chủ đề: ${TOPIC_LABEL[topic] || topic}${score}`,
    },
    TOPIC_LABEL[topic] || topic,
  );
}

async function getJson(url, signal) {
  let response;
  try {
    response = await fetch(url, { signal, headers: { Accept: "application/json" } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("Không kết nối được tới máy chủ vnsearch. Máy chủ còn chạy không?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    throw new Error(explain(response.status, detail));
  }
  return body;
}

function explain(status, detail) {
  if (/query is empty/.test(detail)) return "Hãy nhập ít nhất một từ để tìm.";
  if (status === 404) return `Không tìm thấy: ${detail}`;
  if (status === 503) return `Chỉ mục chưa sẵn sàng: ${detail}`;
  if (status >= 500) return "Máy chủ gặp lỗi khi xử lý yêu cầu. Hãy thử lại.";
  return `Yêu cầu không hợp lệ: ${detail}`;
}

/* -- sidebar: topics and documents -------------------------------------------------------- */

function renderTopics() {
  els.topics.replaceChildren();
  const entries = [["", "Tất cả chủ đề"], ...TOPICS];
  for (const [topic, label] of entries) {
    let count = "";
    if (topic === "" && totalPassages !== null) count = number(totalPassages);
    else if (topicCounts && Object.keys(topicCounts).length) count = number(topicCounts[topic] || 0);
    const button = el(
      "button",
      {
        type: "button",
        class: "topic-option",
        "data-topic": topic,
        "aria-pressed": String(state.topic === topic),
        onclick: () => {
          if (state.topic === topic) return;
          commit({ topic, page: 1, p: "" });
          run();
        },
      },
      el("span", { class: `topic-dot t-${topic || "all"}`, "aria-hidden": "true" }),
      el("span", {}, label),
      el("span", { class: "count" }, count),
    );
    els.topics.append(el("li", {}, button));
  }
}

async function loadOverview() {
  try {
    const [stats, docs] = await Promise.all([getJson("/stats"), getJson("/documents")]);
    topicCounts = stats.topics || {};
    totalPassages = stats.passages;
    els.info.textContent =
      `${number(stats.documents)} văn bản · ${number(stats.passages)} đoạn` +
      (Object.keys(topicCounts).length ? "" : " · chưa gán chủ đề");
    renderTopics();
    for (const doc of docs.documents) {
      const title = doc.title.length > 80 ? `${doc.title.slice(0, 78)}…` : doc.title;
      els.doc.append(el("option", { value: doc.path, title: doc.title }, title));
    }
    els.doc.value = state.doc;
  } catch (error) {
    els.info.textContent = "Không đọc được thông tin chỉ mục";
  }
}

/* -- results ------------------------------------------------------------------------------ */

function setStatus(...nodes) {
  els.status.replaceChildren(...nodes);
}

function showLoading() {
  els.results.setAttribute("aria-busy", "true");
  setStatus("Đang tìm…");
  els.pager.replaceChildren();
  els.hits.replaceChildren(
    ...[0, 1, 2].map(() =>
      el(
        "li",
        { class: "skeleton", "aria-hidden": "true" },
        el("span", { class: "w-45" }),
        el("span", { class: "w-90" }),
        el("span", { class: "w-80" }),
      ),
    ),
  );
}

function showNotice(kind, title, ...body) {
  els.results.removeAttribute("aria-busy");
  els.pager.replaceChildren();
  els.hits.replaceChildren(
    el("li", { class: `notice ${kind}` }, el("h2", {}, title), ...body),
  );
}

function exampleChips() {
  return el(
    "div",
    { class: "examples" },
    EXAMPLES.map((text) =>
      el(
        "button",
        {
          type: "button",
          class: "chip",
          onclick: () => {
            els.q.value = text;
            commit({ q: text, page: 1, p: "" });
            run();
          },
        },
        text,
      ),
    ),
  );
}

function showWelcome() {
  setStatus();
  showNotice(
    "welcome",
    "Tìm trong các báo cáo, văn bản đã lập chỉ mục",
    el(
      "p",
      {},
      "Gõ từ khoá hoặc một câu hỏi, có dấu hay không dấu đều được. " +
        "Chọn chủ đề ở bên trái để thu hẹp kết quả, hoặc bấm một chủ đề khi ô tìm kiếm " +
        "để trống để duyệt các đoạn văn của chủ đề đó.",
    ),
    el("p", {}, "Thử ngay:"),
    exampleChips(),
  );
}

function hitCard(item, { rank, snippetHtml, score }) {
  const open = (event) => openReader(item.passage_id, event.currentTarget);
  return el(
    "li",
    { class: "hit", "data-passage": item.passage_id },
    el(
      "div",
      { class: "hit-top" },
      rank ? el("span", { class: "rank" }, `${rank}.`) : null,
      topicBadge(item.topic, item.topic_scores),
      el("span", { class: "hit-doc", title: `${item.title}\n${item.doc}` }, item.title),
    ),
    item.section
      ? el("p", { class: "hit-section", title: item.section }, sectionPath(item.section))
      : null,
    el("p", { class: "snippet", html: snippetHtml }),
    el(
      "div",
      { class: "hit-actions" },
      el(
        "button",
        { type: "button", class: "link-button", onclick: open },
        "Xem trong văn bản →",
      ),
      el("span", {}, `Đoạn ${item.paragraph}`),
      score !== undefined
        ? el("span", { class: "score", title: "Điểm xếp hạng" }, `điểm ${score.toFixed(4)}`)
        : null,
    ),
  );
}

function renderPager(total) {
  const reachable = Math.min(total, MAX_OFFSET + PAGE_SIZE);
  const pages = Math.ceil(reachable / PAGE_SIZE);
  els.pager.replaceChildren();
  if (pages <= 1) return;
  const go = (page) => () => {
    commit({ page, p: "" });
    run();
    els.results.focus({ preventScroll: true });
    window.scrollTo({ top: 0 });
  };
  const button = (label, page, attrs = {}) =>
    el("button", { type: "button", onclick: go(page), ...attrs }, label);
  els.pager.append(
    button("‹ Trước", state.page - 1, { disabled: state.page <= 1, "aria-label": "Trang trước" }),
  );
  const shown = new Set([1, pages, state.page - 1, state.page, state.page + 1]);
  let last = 0;
  for (let page = 1; page <= pages; page++) {
    if (!shown.has(page)) continue;
    if (page - last > 1) els.pager.append(el("span", { class: "gap" }, "…"));
    els.pager.append(
      button(String(page), page, {
        "aria-current": page === state.page ? "page" : null,
        "aria-label": `Trang ${page}`,
      }),
    );
    last = page;
  }
  els.pager.append(
    button("Sau ›", state.page + 1, { disabled: state.page >= pages, "aria-label": "Trang sau" }),
  );
}

function filterParams(params) {
  if (state.topic) params.set("topic", state.topic);
  if (state.doc) params.set("doc", globEscape(state.doc));
  if (state.section.trim()) params.set("section", state.section.trim());
  return params;
}

function filterSummary() {
  const parts = [];
  if (state.topic) parts.push(`chủ đề ${TOPIC_LABEL[state.topic]}`);
  if (state.doc) {
    const option = [...els.doc.options].find((o) => o.value === state.doc);
    parts.push(`văn bản “${option ? option.textContent : state.doc.split("/").pop()}”`);
  }
  if (state.section.trim()) parts.push(`mục có “${state.section.trim()}”`);
  return parts.length ? ` · lọc theo ${parts.join(", ")}` : "";
}

async function search() {
  const offset = (state.page - 1) * PAGE_SIZE;
  const params = filterParams(
    new URLSearchParams({ q: state.q, k: PAGE_SIZE, offset, mode: state.mode }),
  );
  searchController?.abort();
  const controller = (searchController = new AbortController());
  showLoading();
  const started = performance.now();
  let result;
  try {
    result = await getJson(`/search?${params}`, controller.signal);
  } catch (error) {
    if (error.name === "AbortError") return;
    setStatus();
    showNotice("error", "Không thực hiện được tìm kiếm", el("p", {}, error.message));
    return;
  }
  const seconds = ((performance.now() - started) / 1000).toLocaleString("vi-VN", {
    maximumFractionDigits: 2,
  });
  els.results.removeAttribute("aria-busy");
  if (!result.hits.length) {
    setStatus();
    const empty = offset && result.total ? "Không còn kết quả ở trang này" : "Không tìm thấy đoạn nào phù hợp";
    showNotice(
      "empty",
      `${empty} với “${state.q}”`,
      el(
        "p",
        {},
        state.topic || state.doc || state.section
          ? "Hãy bỏ bớt bộ lọc chủ đề, văn bản hoặc mục, hoặc dùng từ khác."
          : "Hãy thử từ khác, hoặc chuyển sang chế độ Kết hợp hay Ngữ nghĩa.",
      ),
      exampleChips(),
    );
    return;
  }
  const first = offset + 1;
  const lastShown = offset + result.hits.length;
  setStatus(
    el("strong", {}, number(result.total)),
    ` kết quả cho “${state.q}” · ${MODE_LABEL[result.mode]}${filterSummary()} · `,
    `hiển thị ${number(first)}–${number(lastShown)} · ${seconds} giây`,
  );
  els.hits.replaceChildren(
    ...result.hits.map((hit) =>
      hitCard(hit, { rank: hit.rank, snippetHtml: hit.highlight, score: hit.score }),
    ),
  );
  renderPager(result.total);
}

function preview(text, words = 60) {
  const parts = text.split(/\s+/);
  return parts.length > words ? `${parts.slice(0, words).join(" ")} …` : text;
}

async function browse() {
  const offset = (state.page - 1) * PAGE_SIZE;
  const params = filterParams(new URLSearchParams({ limit: PAGE_SIZE, offset }));
  searchController?.abort();
  const controller = (searchController = new AbortController());
  showLoading();
  let result;
  try {
    result = await getJson(`/passages?${params}`, controller.signal);
  } catch (error) {
    if (error.name === "AbortError") return;
    setStatus();
    showNotice("error", "Không tải được danh sách đoạn văn", el("p", {}, error.message));
    return;
  }
  els.results.removeAttribute("aria-busy");
  if (!result.passages.length) {
    setStatus();
    showNotice(
      "empty",
      "Không có đoạn nào khớp bộ lọc",
      el("p", {}, "Hãy bỏ bớt bộ lọc, hoặc nhập từ khoá để tìm."),
    );
    return;
  }
  setStatus(
    el("strong", {}, number(result.total)),
    ` đoạn văn${filterSummary()} · theo thứ tự trong văn bản`,
  );
  els.hits.replaceChildren(
    ...result.passages.map((passage) =>
      hitCard(passage, { snippetHtml: escapeHtml(preview(passage.text)) }),
    ),
  );
  renderPager(result.total);
}

function syncForm() {
  els.q.value = state.q;
  for (const radio of els.form.elements.mode) radio.checked = radio.value === state.mode;
  els.doc.value = state.doc;
  els.section.value = state.section;
  renderTopics();
  document.title = state.q ? `${state.q} · vnsearch` : "vnsearch · Tra cứu báo cáo công tác Đảng";
}

function run() {
  syncForm();
  if (state.q.trim()) search();
  else if (state.topic || state.doc || state.section.trim()) browse();
  else {
    searchController?.abort();
    showWelcome();
  }
  syncReader();
}

function syncReader() {
  if (state.p) openReader(state.p, null, { fromUrl: true });
  else closeReader({ fromUrl: true });
}

/* -- reader: one passage with its neighbours ---------------------------------------------- */

async function openReader(passageId, trigger, { fromUrl = false } = {}) {
  if (!fromUrl) {
    readerReturnFocus = trigger || document.activeElement;
    readerContext = CONTEXT_START;
    commit({ p: passageId });
  }
  els.reader.hidden = false;
  document.body.style.overflow = "hidden";
  els.readerTitle.textContent = "Đang tải…";
  els.readerPath.textContent = "";
  els.readerBody.replaceChildren();
  els.readerPanel.focus();
  await loadContext(passageId);
}

async function loadContext(passageId) {
  readerController?.abort();
  const controller = (readerController = new AbortController());
  let data;
  try {
    data = await getJson(
      `/passages/${encodeURIComponent(passageId)}?context=${readerContext}`,
      controller.signal,
    );
  } catch (error) {
    if (error.name === "AbortError") return;
    els.readerTitle.textContent = "Không mở được đoạn văn";
    els.readerBody.replaceChildren(el("p", { class: "notice error" }, error.message));
    return;
  }
  const { passage, neighbours } = data;
  els.readerTitle.textContent = passage.title;
  els.readerPath.textContent = passage.doc;
  const nodes = [];
  const canGrow = readerContext < CONTEXT_MAX;
  const more = (label) =>
    el(
      "button",
      {
        type: "button",
        class: "chip reader-more",
        onclick: () => {
          readerContext = Math.min(CONTEXT_MAX, readerContext + CONTEXT_STEP);
          loadContext(passageId);
        },
      },
      label,
    );
  const first = neighbours[0];
  if (canGrow && first && first.paragraph > 1 && first.paragraph <= passage.paragraph - readerContext) {
    nodes.push(more("↑ Xem thêm các đoạn phía trên"));
  }
  let section = null;
  let current = null;
  for (const item of neighbours) {
    if (item.section !== section) {
      section = item.section;
      if (section) nodes.push(el("p", { class: "reader-section" }, sectionPath(section)));
    }
    const isCurrent = item.passage_id === passage.passage_id;
    const node = el(
      "div",
      {
        class: isCurrent ? "passage current" : "passage",
        "data-passage": item.passage_id,
        "aria-current": isCurrent ? "true" : null,
      },
      isCurrent
        ? el(
            "div",
            { class: "passage-meta" },
            el("span", {}, "Đoạn được tìm thấy"),
            topicBadge(item.topic, item.topic_scores),
          )
        : null,
      el("span", { class: "para-no" }, `¶ ${item.paragraph}`),
      // Only the passage that was found gets its words marked; its neighbours are context.
      isCurrent ? el("span", { html: markWords(item.text, state.q) }) : el("span", {}, item.text),
    );
    if (isCurrent) current = node;
    nodes.push(node);
  }
  // Fewer neighbours below than asked for means the document ends there.
  const last = neighbours[neighbours.length - 1];
  if (canGrow && last && last.paragraph >= passage.paragraph + readerContext) {
    nodes.push(more("↓ Xem thêm các đoạn phía dưới"));
  }
  els.readerBody.replaceChildren(...nodes);
  current?.scrollIntoView({ block: "center" });
}

function closeReader({ fromUrl = false } = {}) {
  if (els.reader.hidden) return;
  readerController?.abort();
  els.reader.hidden = true;
  document.body.style.overflow = "";
  if (!fromUrl) {
    if (history.state && history.state.reader) history.back();
    else commit({ p: "" }, { push: false });
  }
  if (readerReturnFocus && document.contains(readerReturnFocus)) readerReturnFocus.focus();
  readerReturnFocus = null;
}

/** The reader is a modal dialog: Tab and Shift+Tab cycle through its own controls. */
function keepFocusInReader(event) {
  const focusable = [...els.readerPanel.querySelectorAll("button, a[href]")];
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  const active = document.activeElement;
  if (event.shiftKey && (active === first || active === els.readerPanel)) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (active === last || !els.readerPanel.contains(active))) {
    event.preventDefault();
    first.focus();
  }
}

/* -- events ------------------------------------------------------------------------------- */

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  commit({ q: els.q.value.trim(), page: 1, p: "" });
  run();
});

els.form.addEventListener("change", (event) => {
  if (event.target.name !== "mode") return;
  commit({ mode: event.target.value, page: 1, p: "" });
  if (state.q.trim()) run();
});

els.doc.addEventListener("change", () => {
  commit({ doc: els.doc.value, page: 1, p: "" });
  run();
});

els.section.addEventListener("change", () => {
  if (els.section.value.trim() === state.section.trim()) return;
  commit({ section: els.section.value.trim(), page: 1, p: "" });
  run();
});

$("home-link").addEventListener("click", (event) => {
  event.preventDefault();
  commit({ ...DEFAULTS });
  run();
  els.q.focus();
});

$("reader-close").addEventListener("click", () => closeReader());
$("reader-backdrop").addEventListener("click", () => closeReader());

document.addEventListener("keydown", (event) => {
  if (!els.reader.hidden) {
    if (event.key === "Escape") {
      event.preventDefault();
      closeReader();
    } else if (event.key === "Tab") {
      keepFocusInReader(event);
    }
    return;
  }
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || "");
  if (event.key === "/" && !typing && els.reader.hidden) {
    event.preventDefault();
    els.q.focus();
    els.q.select();
  }
});

window.addEventListener("popstate", () => {
  const next = readUrl();
  const sameResults = ["q", "mode", "topic", "doc", "section", "page"].every(
    (key) => String(next[key]) === String(state[key]),
  );
  state = next;
  // Opening or closing the reader changes only `p`: keep the results (and scroll) as they are.
  if (sameResults) syncReader();
  else run();
});

state = readUrl();
renderTopics();
run();
loadOverview();
if (!state.q && !state.p) els.q.focus();
