// The dashboard: pages filled from the JSON API with the key the user typed (kept in
// sessionStorage for this tab only). Charts are inline SVG; nothing is loaded from elsewhere.
"use strict";

const T = JSON.parse(document.getElementById("labels").textContent);
const API = "/api/v1/lead-scoring";
const KEY = "lead-scoring-api-key";
const TIERS = ["PREMIUM", "HIGH", "MEDIUM", "LOW", "POOR", "UNKNOWN"];
const TIER_COLOURS = {PREMIUM: "#6a1b9a", HIGH: "#2e7d32", MEDIUM: "#f9a825", LOW: "#ef6c00",
                      POOR: "#c62828", UNKNOWN: "#757575"};
const TIER_ICONS = {PREMIUM: "★", HIGH: "▲", MEDIUM: "●", LOW: "▼", POOR: "✖", UNKNOWN: "?"};
const SVG = "http://www.w3.org/2000/svg";
const integer = new Intl.NumberFormat("es-MX");
const decimal = new Intl.NumberFormat("es-MX", {maximumFractionDigits: 2});
const percent = new Intl.NumberFormat("es-MX", {style: "percent", maximumFractionDigits: 1});
const when = (text) => new Date(text).toLocaleString("es-MX", {timeZone: "America/Mexico_City"});

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children.map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
}

async function api(path, options = {}) {
  const response = await fetch(API + path, {
    ...options, headers: {"X-API-Key": sessionStorage.getItem(KEY) || ""}});
  const body = await response.json();
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey();
  }
  if (!response.ok) throw Object.assign(new Error(body.detail), {status: response.status});
  return body;
}

function tierBadge(tier) {
  return el("span", {class: "badge", style: `background:${TIER_COLOURS[tier]}`},
            `${TIER_ICONS[tier]} ${T[tier]}`);
}

function withLang(path) {
  return `${path}${path.includes("?") ? "&" : "?"}lang=${T.lang}`;
}

// "no contactar" and why, for a suppressed contact (null for one that may be messaged)
function doNotContact(item) {
  if (!item.do_not_contact) return null;
  const reasons = item.suppression_reasons.map((r) => T[`reason_${r}`] || r).join(", ");
  return el("span", {class: "do-not-contact"}, `⛔ ${T.do_not_contact}: ${reasons}`);
}

// contact list

let nextCursor = null;

function contactRow(item) {
  const flag = doNotContact(item);
  return el("tr", {"data-contact-id": item.contact_id, class: flag ? "suppressed" : ""},
    el("td", {}, item.contact_id), el("td", {}, item.phone || "", ...(flag ? [" ", flag] : [])),
    el("td", {}, item.state_name || ""),
    el("td", {class: "score"}, el("strong", {}, item.total_score), " ", tierBadge(item.quality_tier)),
    el("td", {}, percent.format(item.confidence_level)), el("td", {}, item.platform_count),
    el("td", {}, when(item.last_calculated_at)),
    el("td", {}, el("a", {href: withLang(`/card?id=${item.contact_id}`), class: "open"}, T.open)));
}

function listQuery() {
  const params = new URLSearchParams();
  for (const [id, name] of [["tier", "tier"], ["state", "state"], ["min-score", "min_score"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) params.set(name, value);
  }
  if (document.getElementById("contactable").checked) params.set("contactable", "true");
  if (nextCursor) params.set("cursor", nextCursor);
  return params;
}

async function loadPage(reset) {
  const body = document.querySelector("#contacts tbody");
  if (reset) { body.replaceChildren(); nextCursor = null; }
  const page = await api(`/contacts?${listQuery()}`);
  body.append(...page.items.map(contactRow));
  nextCursor = page.next_cursor;
  document.getElementById("more").hidden = !nextCursor;
  document.getElementById("empty").hidden = body.children.length > 0;
}

function contactsPage() {
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadPage(true).catch((e) => showError(e.message));
  });
  document.getElementById("more").addEventListener("click",
    () => loadPage(false).catch((e) => showError(e.message)));
  document.getElementById("phone-search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const phone = document.getElementById("phone").value;
    const body = document.querySelector("#contacts tbody");
    document.getElementById("more").hidden = true;
    try {
      const card = await api(`/lookup?${new URLSearchParams({phone})}`);
      body.replaceChildren(contactRow({...card, state_name: card.profile.state_name}));
      document.getElementById("empty").hidden = true;
    } catch (error) {
      body.replaceChildren();
      document.getElementById("empty").hidden = false;
      showError(error.message);
    }
  });
  return loadPage(true);
}

// score card

function bar(label, value, max, before) {
  const width = max ? Math.min(100, (100 * value) / max) : 0;
  return el("div", {class: "bar-row", "data-platform": label},
    el("span", {class: "bar-label"}, label),
    el("span", {class: "bar"}, el("span", {class: "fill", style: `width:${width}%`})),
    el("span", {class: "bar-value"}, `${value}/${max}`),
    el("span", {class: "bar-note"}, before === null ? "" : `(${before} ${T.before_quality})`));
}

// A score of another calculation_version: which, and how much of it is known (the breakdown
// is null when the server does not know that version's configuration).
function versionNote(card) {
  const note = document.getElementById("version-note");
  note.hidden = card.is_current_version;
  if (card.is_current_version) return;
  note.textContent = (card.score_breakdown ? T.other_version : T.other_version_stored)
    .replaceAll("{version}", card.calculation_version)
    .replaceAll("{current}", card.current_calculation_version);
}

async function cardPage() {
  const id = new URLSearchParams(location.search).get("id");
  const card = await api(`/contacts/${encodeURIComponent(id)}`);
  const b = card.score_breakdown;
  const colour = TIER_COLOURS[card.quality_tier];
  document.getElementById("card").style.borderTopColor = colour;
  document.getElementById("card-contact").textContent = `#${card.contact_id}`;
  document.getElementById("card-phone").textContent = card.phone || "";
  const flag = doNotContact(card);
  document.getElementById("do-not-contact").hidden = !flag;
  document.getElementById("do-not-contact").replaceChildren(...(flag ? [flag] : []));
  const p = card.profile;
  document.getElementById("card-location").textContent =
    [p.municipality, p.state_name, p.lada && `LADA ${p.lada}`, p.operator].filter(Boolean).join(", ");
  document.getElementById("tier-icon").textContent = TIER_ICONS[card.quality_tier];
  document.getElementById("tier-icon").style.color = colour;
  document.getElementById("total-score").textContent = card.total_score;
  document.getElementById("tier").replaceWith(Object.assign(tierBadge(card.quality_tier), {id: "tier"}));
  versionNote(card);
  document.getElementById("platform-bars").replaceChildren(...Object.entries(card.display_weights)
    .map(([name, weight]) => bar(name, card[`${name}_score`], weight,
                                 b ? b.points_before_quality[name] : null)));
  document.getElementById("factors-section").hidden = !b;
  document.getElementById("bonus-section").hidden = !b;
  if (b) {
    document.querySelector("#factors tbody").replaceChildren(...Object.entries(b.quality_factors)
      .map(([name, value]) => el("tr", {}, el("td", {}, T[name] || name),
                                 el("td", {}, decimal.format(value)))));
    document.getElementById("multiplier").textContent = decimal.format(b.quality_multiplier);
    document.querySelector("#bonus tbody").replaceChildren(...Object.entries(b.bonus)
      .map(([name, value]) => el("tr", {class: name === "total" ? "sum" : ""},
                                 el("td", {}, T[name] || name), el("td", {}, `+${value}`))));
  }
  document.getElementById("confidence").textContent = percent.format(card.confidence_level);
  document.getElementById("business-accounts").textContent = card.business_account_count;
  document.getElementById("premium-accounts").textContent = card.premium_account_count;
  document.getElementById("trend").textContent = T[card.trend];
  document.getElementById("trend").className = `trend ${card.trend}`;
  const ml = card.ml_score;
  document.getElementById("ml-score").textContent = ml
    ? `${decimal.format(ml.predicted_score)}/100 ${T[ml.predicted_tier]} (${percent.format(ml.confidence)})`
    : T.no_ml;
  const conversion = card.conversion_score;
  document.getElementById("conversion-score").textContent = !conversion
    ? T.no_conversion
    : conversion.conversion_probability === null
      ? `${T.decile} ${conversion.probability_decile}/10 (${conversion.method})`
      : `${percent.format(conversion.conversion_probability)} · ${T.decile} ${conversion.probability_decile}/10`;
  const reasons = (conversion && conversion.reasons) || {raises: [], lowers: []};
  document.getElementById("conversion-reasons").replaceChildren(
    ...reasons.raises.map((r) => el("li", {class: "raises"}, `▲ ${r.words} (${r.effect > 0 ? "+" : ""}${decimal.format(r.effect)})`)),
    ...reasons.lowers.map((r) => el("li", {class: "lowers"}, `▼ ${r.words} (${decimal.format(r.effect)})`)));
  const uplift = card.uplift_score;
  document.getElementById("uplift-score").textContent = !uplift
    ? T.no_uplift
    : `${uplift.uplift > 0 ? "+" : ""}${decimal.format(uplift.uplift * 100)} ${T.uplift_points} · ${T.decile} ${uplift.uplift_decile}/10`;
  const upliftReasons = (uplift && uplift.reasons) || {raises: [], lowers: []};
  const words = (r) => (T.lang === "es" ? r.words_es : r.words);
  document.getElementById("uplift-reasons").replaceChildren(
    ...upliftReasons.raises.map((r) => el("li", {class: "raises"}, `▲ ${words(r)} (+${decimal.format(r.effect * 100)})`)),
    ...upliftReasons.lowers.map((r) => el("li", {class: "lowers"}, `▼ ${words(r)} (${decimal.format(r.effect * 100)})`)));
  document.getElementById("calculated").textContent =
    `${when(card.last_calculated_at)} · ${card.calculation_version}`;
  document.querySelector("#history tbody").replaceChildren(...card.history.map((h) => el("tr", {},
    el("td", {}, when(h.changed_at)),
    el("td", {}, `${h.old_total_score ?? "–"} → ${h.new_total_score}`),
    el("td", {}, `${h.old_quality_tier ? T[h.old_quality_tier] : "–"} → ${T[h.new_quality_tier]}`),
    el("td", {}, h.calculation_version))));
  document.getElementById("calculate").addEventListener("click", async () => {
    const result = document.getElementById("calculate-result");
    try {
      await api(`/contacts/${card.contact_id}/rescore`, {method: "POST"});
      result.textContent = T.queued;
    } catch (error) {
      result.textContent = error.status === 403 ? T.forbidden : error.message;
    }
  });
}

// analytics charts (inline SVG)

function doughnut(entries) {
  const total = entries.reduce((sum, e) => sum + e.value, 0) || 1;
  const chart = svg("svg", {viewBox: "0 0 320 200", role: "img"});
  let angle = -Math.PI / 2;
  for (const e of entries) {
    const sweep = (2 * Math.PI * e.value) / total;
    if (e.value > 0) {
      const [x1, y1] = [100 + 80 * Math.cos(angle), 100 + 80 * Math.sin(angle)];
      const [x2, y2] = [100 + 80 * Math.cos(angle + sweep - 1e-6),
                        100 + 80 * Math.sin(angle + sweep - 1e-6)];
      const path = svg("path", {d: `M ${x1} ${y1} A 80 80 0 ${sweep > Math.PI ? 1 : 0} 1 ${x2} ${y2}`,
                                fill: "none", stroke: e.color, "stroke-width": 36});
      path.append(svg("title", {}, `${e.label}: ${integer.format(e.value)}`));
      chart.append(path);
    }
    angle += sweep;
  }
  entries.forEach((e, i) => {
    chart.append(svg("rect", {x: 200, y: 20 + i * 26, width: 14, height: 14, fill: e.color}));
    chart.append(svg("text", {x: 220, y: 32 + i * 26, class: "legend"},
                     `${e.label} ${percent.format(e.value / total)}`));
  });
  return chart;
}

function bars(entries, format) {
  const max = Math.max(...entries.map((e) => e.value), 0) || 1;
  const width = 320 / entries.length;
  const chart = svg("svg", {viewBox: "0 0 320 200", role: "img"});
  entries.forEach((e, i) => {
    const height = (150 * e.value) / max;
    chart.append(svg("rect", {x: i * width + 6, y: 170 - height, width: width - 12, height,
                              fill: e.color || "#1565c0"}));
    chart.append(svg("text", {x: i * width + width / 2, y: 165 - height, class: "value"},
                     format(e.value)));
    chart.append(svg("text", {x: i * width + width / 2, y: 188, class: "axis"}, e.label));
  });
  return chart;
}

function line(points, format) {
  const chart = svg("svg", {viewBox: "0 0 640 200", role: "img"});
  const values = points.map((p) => p.value);
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const span = high - low || 1;
  const x = (i) => 40 + (points.length > 1 ? (560 * i) / (points.length - 1) : 280);
  const y = (v) => 160 - (130 * (v - low)) / span;
  chart.append(svg("polyline", {points: points.map((p, i) => `${x(i)},${y(p.value)}`).join(" "),
                                fill: "none", stroke: "#1565c0", "stroke-width": 2}));
  points.forEach((p, i) => {
    const dot = svg("circle", {cx: x(i), cy: y(p.value), r: 4, fill: "#1565c0"});
    dot.append(svg("title", {}, `${p.label}: ${format(p.value)}`));
    chart.append(dot);
  });
  chart.append(svg("text", {x: 40, y: 188, class: "axis start"}, points[0].label));
  chart.append(svg("text", {x: 600, y: 188, class: "axis end"}, points[points.length - 1].label));
  chart.append(svg("text", {x: 4, y: y(high) + 4, class: "axis start"}, format(high)));
  chart.append(svg("text", {x: 4, y: y(low) + 4, class: "axis start"}, format(low)));
  return chart;
}

async function analyticsPage() {
  const {latest, history} = await api("/analytics");
  document.getElementById("computed-at").textContent = `${T.computed_at} ${when(latest.computed_at)}`;
  document.getElementById("headline").replaceChildren(...[
    ["contacts", integer.format(latest.contacts)],
    ["premium_leads", integer.format(latest.premium_leads)],
    ["average_score", decimal.format(latest.average_score)],
    ["validated_contacts", integer.format(latest.validated_contacts)],
    ["multi_platform_contacts", integer.format(latest.multi_platform_contacts)],
  ].map(([name, value]) => el("div", {class: "tile", "data-figure": name},
                              el("span", {}, T[name]), el("strong", {}, value))));
  document.getElementById("tier-chart").append(doughnut(TIERS.map((tier) => (
    {label: T[tier], value: latest.tier_distribution[tier] || 0, color: TIER_COLOURS[tier]}))));
  document.getElementById("score-chart").append(bars(Object.entries(latest.score_distribution)
    .map(([label, value]) => ({label, value})), (v) => integer.format(v)));
  document.getElementById("platform-chart").append(bars(Object.entries(latest.platform_success)
    .map(([label, value]) => ({label, value, color: "#00897b"})), (v) => percent.format(v)));
  document.getElementById("history-chart").append(line(history.map((h) => (
    {label: when(h.computed_at), value: h.average_score})), (v) => decimal.format(v)));
  document.querySelector("#states tbody").replaceChildren(...(latest.by_state || []).map((s) =>
    el("tr", {}, el("td", {}, s.state), el("td", {}, integer.format(s.contacts)),
       el("td", {}, integer.format(s.top_leads)), el("td", {}, decimal.format(s.average_score)),
       el("td", {}, percent.format(s.validation_success_rate)))));
}

// campaign results

const pesos = new Intl.NumberFormat("es-MX", {style: "currency", currency: "MXN",
                                              maximumFractionDigits: 0});

function withInterval(effect, name, format) {
  if (!effect || effect[name] === null) return "—";
  return `${format(effect[name])} [${format(effect[`${name}_low`])}, ` +
         `${format(effect[`${name}_high`])}]`;
}

function armCell(arm) {
  if (!arm.recipients) return "—";
  return `${integer.format(arm.conversions)} / ${integer.format(arm.recipients)} ` +
         `(${percent.format(arm.conversion_rate)})`;
}

async function showDeciles(id) {
  const campaign = await api(`/campaigns/${id}`);
  document.getElementById("deciles-title").textContent = `${T.deciles}: ${campaign.name || id}`;
  document.querySelector("#deciles tbody").replaceChildren(...campaign.deciles.map((d) =>
    el("tr", {}, el("td", {}, d.decile), el("td", {}, armCell(d.target)),
       el("td", {}, armCell(d.control)),
       el("td", {}, withInterval(d.effect, "incremental_rate", percent.format)))));
  document.getElementById("deciles-section").hidden = false;
}

function campaignRow(c) {
  const sent = when(c.sent_at) + (c.window_closed ? "" : ` (${T.window_open})`);
  const effect = c.has_control ? [
    el("td", {}, withInterval(c.effect, "incremental_conversions", decimal.format)),
    el("td", {}, withInterval(c.effect, "incremental_profit", pesos.format)),
    el("td", {}, withInterval(c.effect, "return_per_peso", decimal.format))]
    : [el("td", {colspan: 3, class: "note"}, T.no_control)];
  const open = el("button", {type: "button"}, T.deciles);
  open.addEventListener("click", () => showDeciles(c.campaign_id)
    .catch((error) => showError(error.message)));
  return el("tr", {"data-campaign-id": c.campaign_id}, el("td", {}, c.name || c.campaign_id),
            el("td", {}, sent), el("td", {}, armCell(c.arms.target)),
            el("td", {}, armCell(c.arms.control)), ...effect, el("td", {}, open));
}

async function campaignsPage() {
  const {items} = await api("/campaigns");
  document.querySelector("#campaigns tbody").replaceChildren(...(items.length
    ? items.map(campaignRow) : [el("tr", {}, el("td", {colspan: 8}, T.no_campaigns))]));
}

// start

const PAGES = {contacts: contactsPage, card: cardPage, analytics: analyticsPage,
               campaigns: campaignsPage};

function askForKey() {
  document.getElementById("content").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("key-form").hidden = false;
}

function start() {
  if (!sessionStorage.getItem(KEY)) return askForKey();
  document.getElementById("key-form").hidden = true;
  document.getElementById("content").hidden = false;
  document.getElementById("logout").hidden = false;
  PAGES[document.body.dataset.page]()
    .then(() => document.body.setAttribute("data-loaded", "true"))
    .catch((error) => showError(error.message));
}

const switchTo = new URLSearchParams(location.search);
switchTo.set("lang", T.other_lang);
document.getElementById("lang-switch").href = `?${switchTo}`;
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("api-key").value.trim());
  start();
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  askForKey();
});
start();
