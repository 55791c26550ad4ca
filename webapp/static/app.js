// LeadPilot Mini App: Today / Pipeline / Settings, lead detail. Plain JS, no build step.
// Every string from the server goes into the DOM through textContent, never as HTML.
"use strict";

const tg = (window.Telegram && window.Telegram.WebApp) || null;
const view = document.getElementById("view");
const toastEl = document.getElementById("toast");
const API = "/app/api/";
const LEAD_STATUSES = ["analyzed", "reached_out", "meeting_booked", "in_progress", "closed_won", "closed_lost"];
const PLAN_LABEL = {
  awaiting_approval: "📝 awaiting approval", active: "▶️ active", paused: "⏸ paused",
  blocked: "⚠️ blocked", completed: "🏁 completed", cancelled: "🛑 stopped",
};
const STEP_MARK = {completed: "✅", skipped: "⏭", cancelled: "✖️", sent: "🔔", pending: "•"};

const state = {token: null, tab: "today", lead: null, tz: undefined, settings: null, search: ""};
let toastTimer = null;
let mainButtonHandler = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "list") node.setAttribute(key, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function haptic(kind) {
  if (!tg || !tg.HapticFeedback) return;
  if (kind === "success" || kind === "error" || kind === "warning") tg.HapticFeedback.notificationOccurred(kind);
  else if (kind === "select") tg.HapticFeedback.selectionChanged();
  else tg.HapticFeedback.impactOccurred(kind || "light");
}

function toast(text, error = false) {
  toastEl.textContent = text;
  toastEl.dataset.last = text;
  toastEl.classList.toggle("error", error);
  toastEl.classList.add("visible");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => toastEl.classList.remove("visible"), 3000);
}

// ------------------------------------------------------------------ sign-in and API
class ApiError extends Error {
  constructor(status, data) { super(data.error || "HTTP " + status); this.status = status; this.data = data; }
}

async function signIn() {
  const initData = tg ? tg.initData : "";
  const response = await fetch(API + "session", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({init_data: initData}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  state.token = data.token;
  return data;
}

async function api(path, body, retried = false) {
  if (!state.token) await signIn();
  const init = {headers: {Authorization: "Bearer " + state.token}};
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && !retried) {  // session expired: sign in again once
    state.token = null;
    return api(path, body, true);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ------------------------------------------------------------------ formatting
function when(iso) {
  if (!iso) return "—";
  const options = {weekday: "short", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit"};
  try { return new Date(iso).toLocaleString([], {...options, timeZone: state.tz}); }
  catch { return new Date(iso).toLocaleString([], options); }
}

function dueLabel(iso, status, overdue) {
  if (!iso) return "not scheduled";
  if (overdue || status === "sent") return "❗ overdue · " + when(iso);
  return "due " + when(iso);
}

function leadLabel(name, company) { return company ? `${name} (${company})` : name; }

function setMainButton(text, handler) {
  if (!tg) return;
  if (mainButtonHandler) tg.MainButton.offClick(mainButtonHandler);
  mainButtonHandler = handler;
  if (handler) {
    tg.MainButton.setText(text);
    tg.MainButton.onClick(handler);
    tg.MainButton.show();
  } else {
    tg.MainButton.hide();
  }
}

function setBack(visible) {
  document.body.classList.toggle("detail", visible);
  if (!tg) return;
  if (visible) tg.BackButton.show(); else tg.BackButton.hide();
}

// ------------------------------------------------------------------ actions
async function run(button, call, after) {
  const buttons = button ? [...button.parentElement.querySelectorAll("button")] : [];
  for (const b of buttons) b.disabled = true;
  try {
    const data = await call();
    haptic("success");
    toast(data.message || "Done");
    if (after) await after(data);
  } catch (error) {
    haptic("error");
    toast(error.message, true);
    if (error.status === 409 && after) await after(null);
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

function stepAction(item, action) {
  return () => api(`leads/${item.lead_id}/step`, {step_id: item.step_id, plan_version: item.plan_version, action});
}

async function copyDraft(text) {
  try {
    await navigator.clipboard.writeText(text);
    haptic("success");
    toast("Draft copied 📋");
  } catch {
    toast("Copying is not allowed here; select the text instead", true);
  }
}

// ------------------------------------------------------------------ Today
function todayCard(item) {
  const draft = item.draft ? el("div", {class: "draft", text: item.draft, "data-testid": "draft"}) : null;
  if (draft) draft.addEventListener("click", () => draft.classList.toggle("open"));
  const reload = () => render();
  return el("div", {class: "card", "data-testid": "due-item", "data-lead-id": String(item.lead_id)},
    el("div", {class: "name", text: leadLabel(item.name, item.company), onclick: () => openLead(item.lead_id)}),
    el("div", {class: "row"},
      el("span", {class: "hint grow", text: `Step ${item.position} of ${item.total} · ${item.action_type || ""}`}),
      el("span", {class: "due" + (item.overdue ? " overdue" : ""), text: dueLabel(item.due_at, item.status, item.overdue)})),
    el("div", {class: "desc", text: item.description || ""}),
    draft,
    el("div", {class: "actions"},
      el("button", {type: "button", class: "btn primary", text: "✅ Done", "data-testid": "done",
        onclick: (e) => run(e.currentTarget, stepAction(item, "done"), reload)}),
      el("button", {type: "button", class: "btn", text: "💤 1d", "data-testid": "snooze1",
        onclick: (e) => run(e.currentTarget, stepAction(item, "snooze1"), reload)}),
      el("button", {type: "button", class: "btn", text: "💤 3d", "data-testid": "snooze3",
        onclick: (e) => run(e.currentTarget, stepAction(item, "snooze3"), reload)}),
      el("button", {type: "button", class: "btn", text: "⏭ Skip", "data-testid": "skip",
        onclick: (e) => run(e.currentTarget, stepAction(item, "skip"), reload)}),
      item.draft ? el("button", {type: "button", class: "btn", text: "📋 Copy", "data-testid": "copy",
        onclick: () => copyDraft(item.draft)}) : null));
}

async function renderToday() {
  const data = await api("today");
  const overdue = data.items.filter((i) => i.overdue);
  const week = data.items.filter((i) => !i.overdue);
  const parts = [];
  if (!data.items.length) {
    parts.push(el("p", {class: "hint center", text: "Nothing due this week 🎉", "data-testid": "empty"}));
  }
  if (overdue.length) parts.push(el("h2", {text: `Overdue · ${overdue.length}`}), el("div", {class: "section"}, ...overdue.map(todayCard)));
  if (week.length) parts.push(el("h2", {text: `Due this week · ${week.length}`}), el("div", {class: "section"}, ...week.map(todayCard)));
  return parts;
}

// ------------------------------------------------------------------ Pipeline
function leadRow(lead) {
  const next = lead.next_step;
  const sub = [lead.plan_status ? PLAN_LABEL[lead.plan_status] : "no plan"];
  if (next) sub.push(`next: step ${next.position} of ${lead.steps} · ${next.due_at ? when(next.due_at) : "not scheduled"}`);
  return el("div", {class: "lead-row", "data-testid": "lead-row", "data-lead-id": String(lead.id), onclick: () => openLead(lead.id)},
    el("div", {class: "grow"},
      el("div", {class: "name", text: leadLabel(lead.name, lead.company)}),
      el("div", {class: "hint", text: sub.join(" · ")})),
    lead.overdue ? el("span", {class: "overdue-mark", text: "❗", title: "overdue"}) : null,
    el("span", {class: "hint", text: "›"}));
}

async function renderPipeline() {
  const data = await api("pipeline?q=" + encodeURIComponent(state.search));
  const search = el("input", {type: "search", class: "search", placeholder: "Search name or company", value: state.search, "data-testid": "search"});
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      state.search = search.value;
      const list = await renderPipelineGroups();
      document.getElementById("groups").replaceWith(list);
    }, 250);
  });
  return [search, groups(data.leads)];

  async function renderPipelineGroups() {
    const fresh = await api("pipeline?q=" + encodeURIComponent(state.search));
    return groups(fresh.leads);
  }
}

function groups(leads) {
  const box = el("div", {id: "groups"});
  if (!leads.length) {
    box.append(el("p", {class: "hint center", text: state.search ? "No lead matches." : "No leads yet. Add one in the chat with /add."}));
    return box;
  }
  for (const status of LEAD_STATUSES) {
    const mine = leads.filter((l) => l.status === status);
    if (!mine.length) continue;
    box.append(el("h2", {text: `${status.replace(/_/g, " ")} · ${mine.length}`}), el("div", {class: "section"}, ...mine.map(leadRow)));
  }
  return box;
}

// ------------------------------------------------------------------ Lead detail
function openLead(id) {
  haptic("light");
  state.lead = id;
  render();
}

async function renderLead(id) {
  let data;
  try { data = await api("leads/" + id); }
  catch (error) {
    if (error.status === 404) { state.lead = null; toast("That lead isn't yours or no longer exists", true); return renderTab(); }
    throw error;
  }
  const lead = data.lead;
  const reload = () => render();
  const planAction = (action) => () => api(`leads/${lead.id}/plan`, {action});
  const running = ["active", "paused", "blocked", "awaiting_approval"].includes(lead.plan_status);
  const closed = lead.status === "closed_won" || lead.status === "closed_lost";

  const status = el("select", {"data-testid": "lead-status"},
    ...LEAD_STATUSES.map((s) => el("option", {value: s, text: s.replace(/_/g, " "), selected: s === lead.status})));
  status.addEventListener("change", () => {
    const value = status.value;
    const apply = () => run(null, () => api(`leads/${lead.id}/status`, {status: value}), reload);
    if ((value === "closed_won" || value === "closed_lost") && running && tg && tg.showConfirm) {
      tg.showConfirm(`Mark as ${value.replace(/_/g, " ")}? The plan stops.`, (ok) => ok ? apply() : (status.value = lead.status));
    } else apply();
  });

  const buttons = [];
  if (lead.plan_status === "active") buttons.push(el("button", {type: "button", class: "btn", text: "⏸ Pause", "data-testid": "pause", onclick: (e) => run(e.currentTarget, planAction("pause"), reload)}));
  if (lead.plan_status === "paused" || lead.plan_status === "blocked") buttons.push(el("button", {type: "button", class: "btn", text: "▶️ Resume", "data-testid": "resume", onclick: (e) => run(e.currentTarget, planAction("resume"), reload)}));
  if (running) buttons.push(el("button", {type: "button", class: "btn danger", text: "🛑 Stop", "data-testid": "stop", onclick: (e) => run(e.currentTarget, planAction("stop"), reload)}));
  if (!closed) buttons.push(el("button", {type: "button", class: "btn", text: "🔄 Regenerate", "data-testid": "regenerate", onclick: (e) => run(e.currentTarget, planAction("regenerate"), reload)}));

  const timeline = el("ul", {class: "timeline", "data-testid": "timeline"}, ...lead.timeline.map((s) => {
    const open = s.status === "pending" || s.status === "sent";
    const mark = open && s.current ? (s.status === "sent" ? "🔔" : "⏳") : STEP_MARK[s.status] || "•";
    const dueText = open && lead.plan_status !== "awaiting_approval" ? dueLabel(s.due_at, s.current ? s.status : "pending", s.current && lead.overdue) : s.completed_at ? when(s.completed_at) : "";
    return el("li", {class: s.current ? "current" : "", "data-status": s.status},
      el("span", {class: "mark", text: mark}),
      el("div", {class: "grow"},
        el("div", {text: `${s.position}. ${s.action_type || ""} — ${s.description || ""}`}),
        dueText ? el("div", {class: "hint", text: dueText}) : null));
  }));
  if (!lead.timeline.length) timeline.append(el("li", {class: "hint", text: "No plan yet."}));

  const log = el("ul", {class: "timeline log", "data-testid": "activity"}, ...lead.activity.map((a) =>
    el("li", {}, el("div", {class: "grow"}, el("div", {text: a.content || a.type.replace(/_/g, " ")}), el("div", {class: "hint", text: `${a.type.replace(/_/g, " ")} · ${when(a.at)}`})))));
  if (!lead.activity.length) log.append(el("li", {class: "hint", text: "Nothing yet."}));

  return [
    el("div", {class: "detail-head", "data-testid": "lead-detail"},
      el("div", {class: "name", text: leadLabel(lead.name, lead.company)}),
      lead.title ? el("div", {class: "hint", text: lead.title}) : null,
      lead.context ? el("div", {class: "hint", text: lead.context}) : null),
    el("div", {class: "section"},
      el("div", {class: "field"}, el("label", {text: "Status"}), status),
      el("div", {class: "field"}, el("label", {text: "Plan"}), el("span", {"data-testid": "plan-status", text: lead.plan_status ? PLAN_LABEL[lead.plan_status] : "no plan"})),
      buttons.length ? el("div", {class: "card"}, el("div", {class: "actions"}, ...buttons)) : null),
    el("h2", {text: "Timeline"}), el("div", {class: "section"}, timeline),
    el("h2", {text: "Activity"}), el("div", {class: "section"}, log),
  ];
}

// ------------------------------------------------------------------ Settings
function browserTimezone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch { return ""; }
}

async function renderSettings() {
  const data = await api("settings");
  const s = data.settings;
  state.settings = s;
  const device = browserTimezone();
  const prefill = s.timezone === "UTC" && device && device !== "UTC" ? device : s.timezone;
  const tz = el("input", {type: "text", value: prefill, list: "zones", autocomplete: "off", "data-testid": "timezone"});
  const zones = el("datalist", {id: "zones"});
  try { for (const z of Intl.supportedValuesOf("timeZone")) zones.append(el("option", {value: z})); } catch { /* old browser */ }
  const start = el("input", {type: "time", value: s.window_start, "data-testid": "window-start"});
  const end = el("input", {type: "time", value: s.window_end, "data-testid": "window-end"});
  const workdays = el("input", {type: "checkbox", checked: s.workdays_only, "data-testid": "workdays"});
  const days = el("input", {type: "number", min: "1", max: "365", value: "7", style: "max-width:90px", "data-testid": "vacation-days"});

  const save = async () => {
    if (tg) tg.MainButton.showProgress();
    try {
      await run(null, () => api("settings", {timezone: tz.value.trim(), window_start: start.value, window_end: end.value, workdays_only: workdays.checked}),
        async (r) => { if (r) state.tz = r.settings.timezone; });
    } finally { if (tg) tg.MainButton.hideProgress(); }
  };
  setMainButton("Save settings", save);
  const reload = () => render();
  return [
    el("h2", {text: "Reminders"}),
    el("div", {class: "section"},
      el("div", {class: "field"}, el("label", {text: "Timezone"}), tz, zones),
      prefill !== s.timezone ? el("div", {class: "field hint", text: `Suggested from this device; saved: ${s.timezone}`}) : null,
      el("div", {class: "field"}, el("label", {text: "Send window from"}), start),
      el("div", {class: "field"}, el("label", {text: "until"}), end),
      el("div", {class: "field"}, el("label", {text: "Workdays only"}), workdays),
      tg && tg.MainButton ? null : el("div", {class: "card"}, el("button", {type: "button", class: "btn primary", text: "Save settings", "data-testid": "save", onclick: save}))),
    el("h2", {text: "Vacation"}),
    el("div", {class: "section"},
      s.paused_until ? el("div", {class: "field hint", "data-testid": "paused-until", text: "All plans paused until " + when(s.paused_until)}) : null,
      el("div", {class: "field"}, el("label", {text: "Pause all plans for days"}), days),
      el("div", {class: "card"}, el("div", {class: "actions"},
        el("button", {type: "button", class: "btn", text: "⏸ Pause all", "data-testid": "vacation-pause",
          onclick: (e) => run(e.currentTarget, () => api("vacation", {days: Number(days.value)}), reload)}),
        el("button", {type: "button", class: "btn", text: "▶️ Resume all", "data-testid": "vacation-resume",
          onclick: (e) => run(e.currentTarget, () => api("vacation", {days: null}), reload)})))),
  ];
}

// ------------------------------------------------------------------ navigation
async function renderTab() {
  if (state.tab === "pipeline") return renderPipeline();
  if (state.tab === "settings") return renderSettings();
  return renderToday();
}

async function render() {
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === state.tab));
  setBack(state.lead !== null);
  if (state.tab !== "settings" || state.lead !== null) setMainButton(null, null);
  try {
    const parts = state.lead !== null ? await renderLead(state.lead) : await renderTab();
    view.replaceChildren(...parts);
    document.body.dataset.view = state.lead !== null ? "lead" : state.tab;
  } catch (error) {
    view.replaceChildren(el("p", {class: "hint center", "data-testid": "error", text: error.message}));
    document.body.dataset.view = "error";
  }
  document.body.dataset.ready = "true";
  // Milliseconds from navigation start to the first full view (benchmarks/miniapp.py).
  if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = String(Math.round(performance.now()));
}

for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => { haptic("select"); state.tab = b.dataset.tab; state.lead = null; render(); });
}

function applyTheme() {
  if (!tg) return;
  const p = tg.themeParams || {};
  const root = document.documentElement.style;
  for (const [key, value] of Object.entries(p)) root.setProperty("--tg-theme-" + key.replace(/_/g, "-"), value);
  document.documentElement.dataset.scheme = tg.colorScheme || "light";
}

(async () => {
  if (!tg || !tg.initData) {
    view.replaceChildren(el("p", {class: "hint center", "data-testid": "error", text: "Open LeadPilot from Telegram: the 📋 Open pipeline button or the menu button in the bot's chat."}));
    document.body.dataset.ready = "true";
    return;
  }
  tg.ready();
  tg.expand();
  applyTheme();
  tg.onEvent("themeChanged", applyTheme);
  tg.BackButton.onClick(() => { state.lead = null; haptic("light"); render(); });
  try {
    const session = await signIn();
    state.tz = session.user.timezone;
  } catch (error) {
    view.replaceChildren(el("p", {class: "hint center", "data-testid": "error", text: "Sign-in failed: " + error.message}));
    document.body.dataset.ready = "true";
    return;
  }
  const lead = new URLSearchParams(location.search).get("lead");
  if (lead && /^\d{1,19}$/.test(lead)) state.lead = lead;
  render();
})();
