// The dashboard: pages filled from the JSON API with the key the user typed (kept in
// sessionStorage for this tab only). Charts are inline SVG; nothing is loaded from elsewhere.
// Contact and campaign ids are read from contact_id_str and campaign_id_str (a JSON number
// above 2^53 is inexact here).
"use strict";

const T = JSON.parse(document.getElementById("labels").textContent);
const API = "/api/v1/lead-scoring";
const KEY = "lead-scoring-api-key";
const TIERS = ["PREMIUM", "HIGH", "MEDIUM", "LOW", "POOR", "UNKNOWN"];
const TIER_COLOURS = {PREMIUM: "#6a1b9a", HIGH: "#2e7d32", MEDIUM: "#8a6100", LOW: "#b34700",
                      POOR: "#c62828", UNKNOWN: "#757575"};
const TIER_ICONS = {PREMIUM: "★", HIGH: "▲", MEDIUM: "●", LOW: "▼", POOR: "✖", UNKNOWN: "?"};
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 3000;
const integer = new Intl.NumberFormat("es-MX");
const decimal = new Intl.NumberFormat("es-MX", {maximumFractionDigits: 2});
const percent = new Intl.NumberFormat("es-MX", {style: "percent", maximumFractionDigits: 1});
const when = (text) => new Date(text).toLocaleString("es-MX", {timeZone: "America/Mexico_City"});

// A label; a missing one shows as [key] and is listed in <body data-missing>, which the
// browser test reads.
function t(key) {
  if (key in T) return T[key];
  const missing = new Set((document.body.dataset.missing || "").split(" ").filter(Boolean));
  document.body.dataset.missing = [...missing.add(key)].join(" ");
  return `[${key}]`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fill(text, values) {
  return Object.entries(values).reduce((s, [name, value]) => s.replaceAll(`{${name}}`, value), text);
}

function stateName(canonical) {
  return canonical ? t(`state_${canonical}`) : t("state_blank");
}

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

// errors: at the top of the screen (sticky), in the user's language, the API's text behind
// "detalles"; cleared by the next request that succeeds

const ERROR_LABELS = {0: "error_network", 401: "error_key", 403: "error_forbidden",
                      404: "error_not_found", 409: "error_busy", 422: "error_invalid",
                      503: "error_unavailable"};

function errorMessage(error) {
  if (error.status === 400) return t(/cursor/.test(error.detail) ? "error_cursor" : "error_phone");
  return t(ERROR_LABELS[error.status] || "error_server");
}

function showError(error) {
  document.getElementById("error-message").textContent = errorMessage(error);
  document.getElementById("error-detail").textContent =
    `${error.status || ""} ${error.detail || error.message}`.trim();
  document.getElementById("error").hidden = false;
}

function clearError() {
  document.getElementById("error").hidden = true;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(API + path, {...options, headers: {
      ...options.headers, "X-API-Key": sessionStorage.getItem(KEY) || ""}});
  } catch (failure) {
    throw Object.assign(new Error(failure.message), {status: 0, detail: failure.message});
  }
  const body = await response.json().catch(() => ({detail: response.statusText}));
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey();
  }
  if (!response.ok) {
    throw Object.assign(new Error(body.detail), {status: response.status, detail: body.detail});
  }
  clearError();
  return body;
}

function tierBadge(tier) {
  return el("span", {class: `badge tier-${tier}`}, `${TIER_ICONS[tier]} ${t(tier)}`);
}

function withLang(path) {
  return `${path}${path.includes("?") ? "&" : "?"}lang=${T.lang}`;
}

// "no contactar" and why, for a suppressed contact (null for one that may be messaged)
function doNotContact(item) {
  if (!item.do_not_contact) return null;
  const reasons = item.suppression_reasons.map((r) => t(`reason_${r}`)).join(", ");
  return el("span", {class: "do-not-contact"}, `⊘ ${T.do_not_contact}: ${reasons}`);
}

// On a phone every table is a list of cards: each cell is labelled with its column's header.
function labelCells(root) {
  for (const table of root.querySelectorAll("table")) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    if (!heads.length) continue;
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => {
        if (heads[i] && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", heads[i]);
      });
    }
  }
}

new MutationObserver(() => labelCells(document)).observe(document.body,
  {childList: true, subtree: true});

// contact list

let nextCursor = null;
const FILTERS = [["tier", "tier"], ["state", "state"], ["min-score", "min_score"], ["sort", "sort"]];

function optional(value, format) {
  return value === null || value === undefined ? T.no_value : format(value);
}

function contactRow(item) {
  const flag = doNotContact(item);
  const id = item.contact_id_str;
  return el("tr", {"data-contact-id": id, class: flag ? "suppressed" : ""},
    el("td", {}, id), el("td", {}, item.phone || "", ...(flag ? [" ", flag] : [])),
    el("td", {}, stateName(item.state)),
    el("td", {class: "score"}, el("strong", {}, item.total_score), " ", tierBadge(item.quality_tier)),
    el("td", {class: "probability"}, optional(item.conversion_probability, percent.format)),
    el("td", {class: "uplift"}, optional(item.uplift, percent.format)),
    el("td", {}, percent.format(item.confidence_level)), el("td", {}, item.platform_count),
    el("td", {}, when(item.last_calculated_at)),
    el("td", {}, el("a", {href: withLang(`/card?id=${id}`), class: "open",
                          "aria-label": `${T.open} ${T.contact} ${id}`}, T.open)));
}

// the filters, as query parameters of the API and of the page's own address
function filterParams() {
  const params = new URLSearchParams();
  for (const [id, name] of FILTERS) {
    const value = document.getElementById(id).value.trim();
    if (value && !(name === "sort" && value === "score")) params.set(name, value);
  }
  if (document.getElementById("contactable").checked) params.set("contactable", "true");
  return params;
}

function restoreFilters() {
  const saved = new URLSearchParams(location.search);
  for (const [id, name] of FILTERS) {
    if (saved.has(name)) document.getElementById(id).value = saved.get(name);
  }
  document.getElementById("contactable").checked = saved.get("contactable") === "true";
}

function saveFilters() {
  const params = filterParams();
  params.set("lang", T.lang);
  history.replaceState(null, "", `${location.pathname}?${params}`);
  document.getElementById("lang-switch").href = `?${otherLanguage()}`;
}

// the total of a filter reads every matching contact (seconds at 10M): the page comes
// first, the total when it is counted, unless the filters changed meanwhile
let countedFilters = "";

async function showTotal(params) {
  const total = document.getElementById("total");
  const filters = new URLSearchParams(params);
  filters.delete("sort");
  countedFilters = filters.toString();
  total.textContent = T.counting;
  const counted = await api(`/contacts/total?${filters}`);
  if (countedFilters === filters.toString()) {
    total.textContent = fill(T.total_for_filter, {count: integer.format(counted.total)});
  }
}

async function loadPage(reset) {
  const body = document.querySelector("#contacts tbody");
  const params = filterParams();
  if (reset) showTotal(params).catch(showError);
  if (!reset && nextCursor) params.set("cursor", nextCursor);
  params.set("total", "false");
  const page = await api(`/contacts?${params}`);
  if (reset) body.replaceChildren();
  body.append(...page.items.map(contactRow));
  document.getElementById("contacts").classList.toggle("has-uplift",
    page.items.some((i) => i.uplift !== null));
  nextCursor = page.next_cursor;
  document.getElementById("more").hidden = !nextCursor;
  document.getElementById("empty").hidden = body.children.length > 0;
}

const FINISHED = ["SUCCESS", "FAILURE", "CANCELED"];

function showExport(run) {
  document.getElementById("export-status").replaceChildren(
    fill(T.export_status, {status: t(`run_${run.status}`)}), " ",
    el("a", {href: run.dagster_url, rel: "noreferrer"}, T.export_link));
  document.getElementById("export-status").dataset.status = run.status;
}

// "Exportar segmento" (admin keys): campaign_export_job with the list's filters, followed
// until its run ends
async function exportSegment() {
  const filters = Object.fromEntries(filterParams());
  const body = {sort: filters.sort === "conversion" ? "conversion" : "score"};
  if (filters.tier) body.tier = filters.tier;
  if (filters.state) body.state = filters.state;
  if (filters.min_score) body.min_score = Number(filters.min_score);
  const button = document.getElementById("export");
  button.disabled = true;
  try {
    let run = await api("/exports", {method: "POST", body: JSON.stringify(body),
                                     headers: {"Content-Type": "application/json"}});
    showExport(run);
    while (!FINISHED.includes(run.status)) {
      await sleep(POLL_MS);
      run = await api(`/exports/${run.run_id}`);
      showExport(run);
    }
  } finally {
    button.disabled = false;
  }
}

async function offerExport() {
  const {role} = await api("/key");
  document.getElementById("export-box").hidden = role !== "admin";
  document.getElementById("export").addEventListener("click", () => exportSegment().catch(showError));
}

function contactsPage() {
  restoreFilters();
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    saveFilters();
    loadPage(true).catch(showError);
  });
  document.getElementById("more").addEventListener("click", () => loadPage(false).catch(showError));
  document.getElementById("phone-search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const phone = document.getElementById("phone").value;
    const body = document.querySelector("#contacts tbody");
    document.getElementById("more").hidden = true;
    countedFilters = null;
    document.getElementById("total").textContent = "";
    body.replaceChildren();
    try {
      const card = await api(`/lookup?${new URLSearchParams({phone})}`);
      body.replaceChildren(contactRow({...card, state: card.profile.state,
                                       conversion_probability: null, uplift: null}));
      document.getElementById("empty").hidden = true;
    } catch (error) {
      // no contact with this number: an answer, not an error
      document.getElementById("empty").hidden = error.status !== 404;
      if (error.status === 404) clearError(); else showError(error);
    }
  });
  return Promise.all([loadPage(true), offerExport()]);
}

// score card

function bar(label, value, max, before) {
  const fill = el("span", {class: "fill"});
  fill.style.width = `${max ? Math.min(100, (100 * value) / max) : 0}%`;  // CSSOM: allowed by the CSP
  return el("div", {class: "bar-row", "data-platform": label},
    el("span", {class: "bar-label"}, t(`platform_${label}`)),
    el("span", {class: "bar"}, fill),
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

function showCard(card) {
  const b = card.score_breakdown;
  const colour = TIER_COLOURS[card.quality_tier];
  document.getElementById("card").style.borderTopColor = colour;  // CSSOM: allowed by the CSP
  document.getElementById("card-contact").textContent = `#${card.contact_id_str}`;
  document.getElementById("card-phone").textContent = card.phone || "";
  const flag = doNotContact(card);
  document.getElementById("do-not-contact").hidden = !flag;
  document.getElementById("do-not-contact").replaceChildren(...(flag ? [flag] : []));
  const p = card.profile;
  document.getElementById("card-location").textContent = [
    p.municipality, p.state && stateName(p.state), p.lada && `LADA ${p.lada}`, p.operator,
  ].filter(Boolean).join(", ");
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
      .map(([name, value]) => el("tr", {}, el("td", {}, t(name)),
                                 el("td", {}, decimal.format(value)))));
    document.getElementById("multiplier").textContent = decimal.format(b.quality_multiplier);
    document.querySelector("#bonus tbody").replaceChildren(...Object.entries(b.bonus)
      .map(([name, value]) => el("tr", {class: name === "total" ? "sum" : ""},
                                 el("td", {}, t(name)), el("td", {}, `+${value}`))));
  }
  document.getElementById("confidence").textContent = percent.format(card.confidence_level);
  document.getElementById("business-accounts").textContent = card.business_account_count;
  document.getElementById("premium-accounts").textContent = card.premium_account_count;
  document.getElementById("trend").textContent = t(card.trend);
  document.getElementById("trend").className = `trend ${card.trend}`;
  const ml = card.ml_score;
  document.getElementById("ml-score").textContent = ml
    ? `${decimal.format(ml.predicted_score)}/100 ${t(ml.predicted_tier)} (${percent.format(ml.confidence)})`
    : T.no_ml;
  const conversion = card.conversion_score;
  document.getElementById("conversion-score").textContent = !conversion
    ? T.no_conversion
    : conversion.conversion_probability === null
      ? `${T.decile} ${conversion.probability_decile}/10 (${conversion.method})`
      : `${percent.format(conversion.conversion_probability)} · ${T.decile} ${conversion.probability_decile}/10`;
  const reasons = (conversion && conversion.reasons) || {raises: [], lowers: [], rest: null};
  const effect = (r) => `${r.effect > 0 ? "+" : ""}${decimal.format(r.effect)}`;
  document.getElementById("conversion-reasons").replaceChildren(
    ...reasons.raises.map((r) => el("li", {class: "raises"}, `▲ ${r.text[T.lang]} (${effect(r)})`)),
    ...reasons.lowers.map((r) => el("li", {class: "lowers"}, `▼ ${r.text[T.lang]} (${effect(r)})`)),
    ...(reasons.rest ? [el("li", {class: "rest"}, `${t("reasons_rest")} (${effect(reasons.rest)})`)] : []));
  document.getElementById("reasons-section").hidden = !reasons.rest;
  document.getElementById("reasons-note").textContent = reasons.rest
    ? t("reasons_note").replace("{average}", percent.format(reasons.average_probability)) : "";
  const uplift = card.uplift_score;
  document.getElementById("uplift-score").textContent = !uplift
    ? t("no_uplift")
    : `${uplift.uplift > 0 ? "+" : ""}${decimal.format(uplift.uplift * 100)} ${t("uplift_points")} · ${T.decile} ${uplift.uplift_decile}/10`;
  const upliftReasons = (uplift && uplift.reasons) || {raises: [], lowers: [], rest: null};
  const points = (r) => `${r.effect > 0 ? "+" : ""}${decimal.format(r.effect * 100)}`;
  document.getElementById("uplift-reasons").replaceChildren(
    ...upliftReasons.raises.map((r) => el("li", {class: "raises"}, `▲ ${r.text[T.lang]} (${points(r)})`)),
    ...upliftReasons.lowers.map((r) => el("li", {class: "lowers"}, `▼ ${r.text[T.lang]} (${points(r)})`)),
    ...(upliftReasons.rest ? [el("li", {class: "rest"}, `${t("reasons_rest")} (${points(upliftReasons.rest)})`)] : []));
  document.getElementById("calculated").textContent =
    `${when(card.last_calculated_at)} · ${card.calculation_version}`;
  document.querySelector("#history tbody").replaceChildren(...card.history.map((h) => el("tr", {},
    el("td", {}, when(h.changed_at)),
    el("td", {}, `${h.old_total_score ?? "–"} → ${h.new_total_score}`),
    el("td", {}, `${h.old_quality_tier ? t(h.old_quality_tier) : "–"} → ${t(h.new_quality_tier)}`),
    el("td", {}, h.calculation_version))));
}

// "Calcular": queue the contact, then poll its queue entry until it is scored, warning while
// the queue is not processed, and show the new score when it lands.
async function rescore(card) {
  const id = card.contact_id_str;
  const result = document.getElementById("calculate-result");
  const warning = document.getElementById("queue-warning");
  let entry;
  try {
    entry = await api(`/contacts/${id}/rescore`, {method: "POST"});
  } catch (error) {
    if (error.status !== 403) throw error;
    result.textContent = T.forbidden;
    return card;
  }
  document.getElementById("calculate").disabled = true;
  result.textContent = fill(T.pending, {time: when(entry.updated_at)});
  document.body.dataset.rescore = "pending";
  try {
    for (;;) {
      await sleep(POLL_MS);
      const status = await api(`/contacts/${id}/rescore`);
      warning.hidden = !status.stalled;
      if (status.stalled) {
        warning.textContent = fill(T.stalled, {time: when(status.next_entry_waiting_since)});
      }
      if (!status.queued) break;
    }
    const fresh = await api(`/contacts/${id}`);
    showCard(fresh);
    result.textContent = fresh.last_calculated_at === card.last_calculated_at ? T.not_queued
      : fill(T.landed, {score: fresh.total_score, tier: t(fresh.quality_tier),
                        time: when(fresh.last_calculated_at)});
    document.body.dataset.rescore = "done";
    return fresh;
  } finally {
    document.getElementById("calculate").disabled = false;
  }
}

async function cardPage() {
  const id = new URLSearchParams(location.search).get("id");
  let card = await api(`/contacts/${encodeURIComponent(id)}`);
  showCard(card);
  const warning = el("p", {id: "queue-warning", class: "warning", role: "alert"});
  warning.hidden = true;
  document.getElementById("calculate-result").after(warning);
  document.getElementById("calculate").addEventListener("click", () => {
    rescore(card).then((fresh) => { card = fresh; }, showError);
  });
}

// analytics charts (inline SVG)

function doughnut(entries, label) {
  const total = entries.reduce((sum, e) => sum + e.value, 0) || 1;
  const chart = svg("svg", {viewBox: "0 0 320 200", role: "img", "aria-label": label});
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

function bars(entries, format, label) {
  const max = Math.max(...entries.map((e) => e.value), 0) || 1;
  const width = 320 / entries.length;
  const chart = svg("svg", {viewBox: "0 0 320 200", role: "img", "aria-label": label});
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

function line(points, format, label) {
  const chart = svg("svg", {viewBox: "0 0 640 200", role: "img", "aria-label": label});
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
  let figures;
  try {
    figures = await api("/analytics");
  } catch (error) {
    if (error.status !== 404) throw error;
    document.getElementById("computed-at").textContent = T.no_analytics_yet;
    return;
  }
  const {latest, history} = figures;
  document.getElementById("computed-at").textContent = `${T.computed_at} ${when(latest.computed_at)}`;
  document.getElementById("headline").replaceChildren(...[
    ["contacts", integer.format(latest.contacts)],
    ["top_leads", integer.format(latest.top_leads)],
    ["average_score", decimal.format(latest.average_score)],
    ["validated_contacts", integer.format(latest.validated_contacts)],
    ["multi_platform_contacts", integer.format(latest.multi_platform_contacts)],
  ].map(([name, value]) => el("div", {class: "tile", "data-figure": name},
                              el("span", {}, t(name)), el("strong", {}, value))));
  const summary = (entries, format) => entries.map((e) => `${e.label}: ${format(e.value)}`).join(", ");
  const tiers = TIERS.map((tier) => (
    {label: t(tier), value: latest.tier_distribution[tier] || 0, color: TIER_COLOURS[tier]}));
  document.getElementById("tier-chart").append(doughnut(tiers, summary(tiers, integer.format)));
  const scores = Object.entries(latest.score_distribution).map(([label, value]) => ({label, value}));
  document.getElementById("score-chart").append(
    bars(scores, (v) => integer.format(v), summary(scores, integer.format)));
  const platforms = Object.entries(latest.platform_success)
    .map(([name, value]) => ({label: t(`platform_${name}`), value, color: "#00796b"}));
  document.getElementById("platform-chart").append(
    bars(platforms, (v) => percent.format(v), summary(platforms, percent.format)));
  const runs = history.map((h) => ({label: when(h.computed_at), value: h.average_score}));
  document.getElementById("history-chart").append(runs.length < 2
    ? el("p", {class: "note"}, t("needs_two_runs"))
    : line(runs, (v) => decimal.format(v), summary(runs, decimal.format)));
  document.querySelector("#states tbody").replaceChildren(...(latest.by_state || []).map((s) =>
    el("tr", {}, el("td", {}, stateName(s.state === "(blank)" ? null : s.state)),
       el("td", {}, integer.format(s.contacts)),
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
  open.addEventListener("click", () => showDeciles(c.campaign_id_str).catch(showError));
  return el("tr", {"data-campaign-id": c.campaign_id_str},
            el("td", {}, c.name || c.campaign_id_str),
            el("td", {}, sent), el("td", {}, armCell(c.arms.target)),
            el("td", {}, armCell(c.arms.control)), ...effect, el("td", {}, open));
}

function predictedRow(c) {
  const p = c.predicted;
  const range = (value, low, high, format) => (value === null ? T.not_measured
    : `${format(value)} [${format(low)}, ${format(high)}]`);
  const verdict = (inside) => (inside === null ? "—" : inside ? T.inside_yes : T.inside_no);
  return el("tr", {"data-campaign-id": c.campaign_id_str},
            el("td", {}, c.name || c.campaign_id_str),
            el("td", {}, range(p.expected_incremental_conversions, p.expected_incremental_low,
                               p.expected_incremental_high, decimal.format)),
            el("td", {}, range(p.measured_incremental_conversions, p.measured_incremental_low,
                               p.measured_incremental_high, decimal.format)),
            el("td", {}, verdict(p.conversions_inside)),
            el("td", {}, range(p.expected_profit, p.expected_profit_low,
                               p.expected_profit_high, pesos.format)),
            el("td", {}, range(p.measured_profit, p.measured_profit_low,
                               p.measured_profit_high, pesos.format)),
            el("td", {}, verdict(p.profit_inside)));
}

async function campaignsPage() {
  const {items} = await api("/campaigns");
  document.querySelector("#campaigns tbody").replaceChildren(...(items.length
    ? items.map(campaignRow) : [el("tr", {}, el("td", {colspan: 8}, T.no_campaigns))]));
  const predicted = items.filter((c) => c.predicted);
  document.querySelector("#predicted tbody").replaceChildren(...(predicted.length
    ? predicted.map(predictedRow) : [el("tr", {}, el("td", {colspan: 7}, T.no_predictions))]));
}

// proof the score pays

function rateRows(rows, key, label) {
  return rows.map((r) => el("tr", {[`data-${key}`]: r[key]}, el("td", {}, label(r[key])),
    el("td", {}, `${integer.format(r.conversions)} / ${integer.format(r.messages)}`),
    el("td", {}, `${percent.format(r.conversion_rate)} [${percent.format(r.rate_low)}, ` +
                 `${percent.format(r.rate_high)}]`),
    el("td", {}, r.lift === null ? "—" : `×${decimal.format(r.lift)}`)));
}

function proofCampaign(c) {
  const section = document.getElementById("proof-campaign").content.firstElementChild.cloneNode(true);
  section.dataset.campaignId = c.campaign_id_str;
  section.querySelector(".proof-name").textContent = c.name || c.campaign_id_str;
  section.querySelector(".proof-summary").textContent = T.proof_summary
    .replace("{sent}", when(c.sent_at) + (c.window_closed ? "" : ` (${T.window_open})`))
    .replace("{conversions}", integer.format(c.conversions))
    .replace("{messages}", integer.format(c.messages))
    .replace("{rate}", c.conversion_rate === null ? "—" : percent.format(c.conversion_rate))
    + " " + T[`basis_${c.basis}`];
  section.querySelector(".proof-tier-chart").append(bars(c.by_tier.map((r) => (
    {label: T[r.tier], value: r.conversion_rate, color: TIER_COLOURS[r.tier]})), percent.format));
  section.querySelector(".proof-decile-chart").append(bars(c.by_decile.map((r) => (
    {label: r.decile, value: r.conversion_rate})), percent.format));
  section.querySelector(".proof-tiers tbody").append(...rateRows(c.by_tier, "tier", (t) => T[t]));
  section.querySelector(".proof-deciles tbody").append(...rateRows(c.by_decile, "decile", String));
  const effect = c.against_control && c.against_control.effect;
  section.querySelector(".proof-control").textContent = effect
    ? T.proof_control
      .replace("{rate}", withInterval(effect, "incremental_rate", percent.format))
      .replace("{conversions}", withInterval(effect, "incremental_conversions", decimal.format))
    : T.no_control;
  return section;
}

async function proofPage() {
  const {items} = await api("/proof");
  document.getElementById("proof").replaceChildren(...(items.length
    ? items.map(proofCampaign) : [el("p", {}, T.proof_none)]));
}

// start

const PAGES = {contacts: contactsPage, card: cardPage, analytics: analyticsPage,
               campaigns: campaignsPage, proof: proofPage};

function askForKey() {
  document.getElementById("content").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("key-form").hidden = false;
}

function otherLanguage() {
  const params = new URLSearchParams(location.search);
  params.set("lang", T.other_lang);
  return params;
}

function start() {
  if (!sessionStorage.getItem(KEY)) return askForKey();
  document.getElementById("key-form").hidden = true;
  document.getElementById("content").hidden = false;
  document.getElementById("logout").hidden = false;
  PAGES[document.body.dataset.page]()
    .then(() => document.body.setAttribute("data-loaded", "true"))
    .catch(showError);
}

document.getElementById("lang-switch").href = `?${otherLanguage()}`;
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
