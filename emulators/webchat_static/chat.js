// The web chat page's behaviour (chat.html): history, live events, sending, buttons, the Mini App panel.
"use strict";
// Everything is built with DOM APIs and textContent: no bot or user text is parsed as HTML.
const BASE = location.pathname.replace(/\/+$/, "");
const messagesEl = document.getElementById("messages");
const scroller = document.getElementById("scroller");
const input = document.getElementById("composer-input");
const statusEl = document.getElementById("status");
const toastEl = document.getElementById("toast");
const alertEl = document.getElementById("alert");
const commandsEl = document.getElementById("commands");
const SAFE_URL = /^(https?:\/\/|tg:\/\/|mailto:)/i;
let since = 0;
let botName = "Bot";
let typingTimer = null;
let toastTimer = null;
const pendingTimers = new Map();

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch(BASE + "/api/" + path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

// ---------------------------------------------------------------- entities → DOM
function entityNode(entity, slice) {
  switch (entity.type) {
    case "bold": return el("b");
    case "italic": return el("i");
    case "underline": return el("u");
    case "strikethrough": return el("s");
    case "code": return el("code");
    case "pre": { const code = el("code"); if (entity.language) code.dataset.language = entity.language; return [el("pre", {}, code), code]; }
    case "blockquote": case "expandable_blockquote": return el("blockquote");
    case "spoiler": { const s = el("span", {class: "spoiler", title: "Spoiler"}); s.addEventListener("click", () => s.classList.toggle("revealed")); return s; }
    case "text_link": case "url": case "email": {
      const href = entity.type === "text_link" ? entity.url : entity.type === "email" ? "mailto:" + slice : slice;
      if (href && SAFE_URL.test(href)) return el("a", {href, target: "_blank", rel: "noopener noreferrer"});
      return el("span");
    }
    case "bot_command": { const c = el("span", {class: "cmd", title: "Send " + slice}); c.addEventListener("click", () => sendText(slice)); return c; }
    case "mention": case "text_mention": case "hashtag": case "cashtag": return el("span", {class: "mention"});
    default: return el("span");
  }
}

function renderText(text, entities) {
  const fragment = document.createDocumentFragment();
  const ents = (entities || []).slice().sort((a, b) => a.offset - b.offset || b.length - a.length);
  let i = 0;
  // Offsets are UTF-16 code units, exactly JavaScript string indices.
  function build(parent, start, end) {
    let pos = start;
    while (i < ents.length && ents[i].offset < end) {
      const entity = ents[i++];
      const s = Math.max(entity.offset, pos);
      const t = Math.min(entity.offset + entity.length, end);
      if (t <= s) continue;
      if (s > pos) parent.append(text.slice(pos, s));
      const made = entityNode(entity, text.slice(s, t));
      const [outer, inner] = Array.isArray(made) ? made : [made, made];
      parent.append(outer);
      build(inner, s, t);
      pos = t;
    }
    if (pos < end) parent.append(text.slice(pos, end));
  }
  build(fragment, 0, text.length);
  return fragment;
}

// ---------------------------------------------------------------- messages
function time(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function renderMessage(m) {
  const node = el("div", {class: "msg", "data-message-id": String(m.message_id), "data-from": m.from_bot ? "bot" : "user", "data-testid": "message"});
  const bubble = el("div", {class: "bubble"});
  if (m.forwarded_from) bubble.append(el("div", {class: "forwarded", text: "Forwarded from " + m.forwarded_from}));
  if (m.reply_to) bubble.append(el("div", {class: "reply-to", text: m.reply_to.text}));
  const text = el("div", {class: "msg-text", "data-testid": "message-text"});
  text.append(renderText(m.text, m.entities));
  bubble.append(text);
  bubble.append(el("div", {class: "msg-meta", text: (m.edit_date ? "edited " : "") + time(m.date)}));
  node.append(bubble);
  if (m.keyboard && m.keyboard.length) {
    const keyboard = el("div", {class: "keyboard", "data-testid": "keyboard"});
    for (const row of m.keyboard) {
      const rowEl = el("div", {class: "kb-row"});
      for (const button of row) rowEl.append(renderButton(m.message_id, button));
      keyboard.append(rowEl);
    }
    node.append(keyboard);
  }
  if (m.edit_date) node.dataset.edited = "true";
  return node;
}

function renderButton(messageId, button) {
  if (button.web_app) {
    return el("button", {type: "button", class: "kb-btn", text: button.text, "data-testid": "web-app-button", onclick: () => openApp(button.web_app, button.text)});
  }
  if (button.url) {
    return el("a", {class: "kb-btn", href: button.url, target: "_blank", rel: "noopener noreferrer", text: button.text + " ↗"});
  }
  const node = el("button", {type: "button", class: "kb-btn", text: button.text, "data-testid": "button"});
  if (button.callback_data == null) { node.disabled = true; return node; }
  node.dataset.callback = button.callback_data;
  node.addEventListener("click", () => press(messageId, button.callback_data, node));
  return node;
}

function nearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
}

function upsert(m, {flash = false} = {}) {
  const stick = nearBottom();
  const empty = messagesEl.querySelector(".empty");
  if (empty) empty.remove();
  const node = renderMessage(m);
  const existing = messagesEl.querySelector(`[data-message-id="${m.message_id}"]`);
  if (existing) {
    existing.replaceWith(node);
  } else {
    const later = [...messagesEl.children].find((c) => Number(c.dataset.messageId) > m.message_id);
    messagesEl.insertBefore(node, later || null);
  }
  clearPending(m.message_id);
  if (flash) { node.classList.add("flash"); }
  if (stick || !existing) scroller.scrollTop = scroller.scrollHeight;
}

function remove(messageId) {
  const node = messagesEl.querySelector(`[data-message-id="${messageId}"]`);
  if (node) node.remove();
}

function showEmpty() {
  if (messagesEl.children.length) return;
  const start = el("button", {type: "button", class: "round", text: "START", "data-testid": "start"});
  start.id = "send-start";
  start.style.background = "var(--accent)"; start.style.color = "#fff";
  start.addEventListener("click", () => sendText("/start"));
  messagesEl.append(el("div", {class: "empty"},
    el("strong", {text: botName}), el("br"),
    "This is a local Telegram chat. You talk to the bot as a Telegram user; nothing leaves this machine.",
    el("br"), start));
}

// ---------------------------------------------------------------- actions
async function sendText(text) {
  if (!text.trim()) return;
  try {
    const data = await api("send", {text});
    upsert(data.message);
  } catch (error) {
    toast("Could not send: " + error.message, {error: true});
    throw error;
  }
}

function setPending(messageId, node) {
  node.classList.add("pending");
  clearTimeout(pendingTimers.get(messageId));
  pendingTimers.set(messageId, setTimeout(() => clearPending(messageId), 15000));
}

function clearPending(messageId) {
  clearTimeout(pendingTimers.get(messageId));
  pendingTimers.delete(messageId);
  for (const b of messagesEl.querySelectorAll(`[data-message-id="${messageId}"] .kb-btn.pending`)) b.classList.remove("pending");
}

async function press(messageId, callbackData, node) {
  setPending(messageId, node);
  try {
    await api("press", {message_id: messageId, callback_data: callbackData});
  } catch (error) {
    clearPending(messageId);
    toast(error.message, {error: true});
  }
}

function toast(text, {error = false} = {}) {
  toastEl.textContent = text;
  toastEl.dataset.last = text;
  toastEl.classList.toggle("error", error);
  toastEl.classList.add("visible");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => toastEl.classList.remove("visible"), 3500);
}

function showAlert(text) {
  alertEl.querySelector("p").textContent = text;
  alertEl.dataset.last = text;
  alertEl.classList.add("open");
}
alertEl.querySelector("button").addEventListener("click", () => alertEl.classList.remove("open"));

function setStatus(text, cls = "") {
  statusEl.textContent = text;
  statusEl.className = cls;
}

function typing(action) {
  setStatus(action === "typing" ? "typing…" : action.replace(/_/g, " ") + "…", "typing");
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => setStatus("bot"), 5000);
}

// ---------------------------------------------------------------- commands menu
function renderCommands(commands) {
  commandsEl.replaceChildren();
  const list = commands.length ? commands : [{command: "start", description: "Start the bot"}, {command: "help", description: "Help"}];
  for (const c of list) {
    const item = el("button", {type: "button"}, el("span", {class: "c", text: "/" + c.command}), el("span", {class: "d", text: c.description}));
    item.addEventListener("click", () => { commandsEl.classList.remove("open"); sendText("/" + c.command); });
    commandsEl.append(item);
  }
}
document.getElementById("menu-button").addEventListener("click", () => commandsEl.classList.toggle("open"));
document.addEventListener("click", (e) => {
  if (!commandsEl.contains(e.target) && e.target.id !== "menu-button") commandsEl.classList.remove("open");
});

// ---------------------------------------------------------------- composer
document.getElementById("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  input.value = "";
  autosize();
  try { await sendText(text); } catch { input.value = text; autosize(); }
  input.focus();
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    document.getElementById("composer").requestSubmit();
  }
});
function autosize() { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight, 140) + "px"; }
input.addEventListener("input", autosize);

// ---------------------------------------------------------------- sync with the emulator
async function loadHistory() {
  const data = await api("history");
  since = data.seq;
  botName = data.bot.first_name;
  document.getElementById("bot-name").textContent = botName;
  document.getElementById("bot-avatar").textContent = (botName[0] || "B").toUpperCase();
  document.getElementById("user-label").textContent = "as " + data.user.first_name + " · user id " + data.user.id;
  document.title = botName + " — local Telegram chat";
  renderCommands(data.commands);
  setMenuApp(data.menu_app);
  messagesEl.replaceChildren();
  for (const m of data.messages) upsert(m);
  showEmpty();
  scroller.scrollTop = scroller.scrollHeight;
  document.body.dataset.ready = "true";
}

function apply(event) {
  switch (event.kind) {
    case "message":
    case "edit":
      if (event.message) upsert(event.message, {flash: event.kind === "edit"});
      if (event.kind === "message" && event.message && event.message.from_bot) { clearTimeout(typingTimer); setStatus("bot"); }
      break;
    case "delete":
      remove(event.message_id);
      break;
    case "callback_answer":
      clearPending(event.message_id);
      if (event.detail.text) {
        if (event.detail.show_alert) showAlert(event.detail.text);
        else toast(event.detail.text);
      }
      break;
    case "chat_action":
      typing(event.detail.action || "typing");
      break;
  }
}

async function pollForever() {
  let failures = 0;
  for (;;) {
    try {
      const data = await api("events?since=" + since);
      if (failures) { failures = 0; setStatus("bot"); await loadHistory(); continue; }
      if (data.reset) { await loadHistory(); continue; }
      for (const event of data.events) apply(event);
      since = data.seq;
    } catch (error) {
      failures += 1;
      setStatus("connecting…", "offline");
      await new Promise((r) => setTimeout(r, Math.min(1000 * failures, 5000)));
    }
  }
}

(async () => {
  for (let attempt = 1; ; attempt++) {
    try { await loadHistory(); break; } catch {
      setStatus("connecting…", "offline");
      await new Promise((r) => setTimeout(r, Math.min(1000 * attempt, 5000)));
    }
  }
  setStatus("bot");
  input.focus();
  pollForever();
})();
// ---------------------------------------------------------------- Mini App side panel
// The page plays Telegram's side of a Mini App: signed launch data in the URL fragment,
// and the postMessage protocol of Telegram's web clients for the back button, the main
// button, popups, haptics and the theme.
const THEMES = {
  light: {bg_color: "#ffffff", text_color: "#000000", hint_color: "#707579", link_color: "#3390ec",
    button_color: "#3390ec", button_text_color: "#ffffff", secondary_bg_color: "#f4f4f5",
    header_bg_color: "#ffffff", accent_text_color: "#3390ec", section_bg_color: "#ffffff",
    section_header_text_color: "#707579", subtitle_text_color: "#707579", destructive_text_color: "#df3f40"},
  dark: {bg_color: "#212121", text_color: "#ffffff", hint_color: "#aaaaaa", link_color: "#8774e1",
    button_color: "#8774e1", button_text_color: "#ffffff", secondary_bg_color: "#0f0f0f",
    header_bg_color: "#212121", accent_text_color: "#8774e1", section_bg_color: "#212121",
    section_header_text_color: "#aaaaaa", subtitle_text_color: "#aaaaaa", destructive_text_color: "#ff595a"},
};
const appPanel = document.getElementById("app-panel");
const appFrame = document.getElementById("app-frame");
const appMain = document.getElementById("app-main");
const appBack = document.getElementById("app-back");
const appButton = document.getElementById("app-button");
let appTheme = (window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches) ? "dark" : "light";
let hapticCount = 0;
let menuApp = null;

function setMenuApp(app) {
  menuApp = app || null;
  appButton.classList.toggle("available", !!menuApp);
  if (menuApp) appButton.textContent = menuApp.text;
}
appButton.addEventListener("click", () => { if (menuApp) openApp(menuApp.url, menuApp.text); });

function toApp(eventType, eventData) {
  if (appFrame.contentWindow) appFrame.contentWindow.postMessage(JSON.stringify({eventType, eventData: eventData || {}}), "*");
}

function paintPanel() {
  const t = THEMES[appTheme];
  appPanel.dataset.theme = appTheme;
  appPanel.style.setProperty("--app-button", t.button_color);
  appPanel.style.setProperty("--app-button-text", t.button_text_color);
}

async function openApp(url, title) {
  let data;
  try { data = await api("webapp", {url}); } catch (error) { toast(error.message, {error: true}); return; }
  appMain.classList.remove("visible");
  appBack.classList.remove("visible");
  document.getElementById("app-title").textContent = title || "Mini App";
  paintPanel();
  const hash = "tgWebAppData=" + encodeURIComponent(data.init_data) + "&tgWebAppVersion=7.10&tgWebAppPlatform=weba" +
    "&tgWebAppThemeParams=" + encodeURIComponent(JSON.stringify(THEMES[appTheme]));
  appFrame.src = url.split("#")[0] + "#" + hash;
  document.body.classList.add("app-open");
  appPanel.dataset.open = "true";
}

document.getElementById("app-close").addEventListener("click", () => {
  document.body.classList.remove("app-open");
  appPanel.dataset.open = "false";
  appFrame.src = "about:blank";
});
document.getElementById("app-theme").addEventListener("click", () => {
  appTheme = appTheme === "light" ? "dark" : "light";
  paintPanel();
  toApp("theme_changed", {theme_params: THEMES[appTheme]});
});
appBack.addEventListener("click", () => toApp("back_button_pressed"));
appMain.addEventListener("click", () => toApp("main_button_pressed"));

window.addEventListener("message", (event) => {
  if (event.source !== appFrame.contentWindow) return;
  let data;
  try { data = typeof event.data === "string" ? JSON.parse(event.data) : event.data; } catch { return; }
  if (!data || typeof data.eventType !== "string") return;
  const p = data.eventData || {};
  switch (data.eventType) {
    case "web_app_ready": appPanel.dataset.ready = "true"; break;
    case "web_app_setup_back_button": appBack.classList.toggle("visible", !!p.is_visible); break;
    case "web_app_setup_main_button":
      appMain.classList.toggle("visible", !!p.is_visible);
      appMain.textContent = p.is_progress_visible ? "…" : (p.text || "");
      appMain.disabled = p.is_active === false || !!p.is_progress_visible;
      if (p.color) appPanel.style.setProperty("--app-button", p.color);
      if (p.text_color) appPanel.style.setProperty("--app-button-text", p.text_color);
      break;
    case "web_app_trigger_haptic_feedback":
      hapticCount += 1;
      document.getElementById("app-haptic").textContent = "📳 " + (p.notification_type || p.impact_style || p.type);
      appPanel.dataset.haptics = String(hapticCount);
      break;
    case "web_app_open_popup": {
      const buttons = p.buttons || [];
      const ok = buttons.length > 1 ? window.confirm(p.message || "") : (window.alert(p.message || ""), true);
      toApp("popup_closed", {button_id: ok ? "ok" : "cancel"});
      break;
    }
    case "web_app_close": document.getElementById("app-close").click(); break;
  }
});
paintPanel();
