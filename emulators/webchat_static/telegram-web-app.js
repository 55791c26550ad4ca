// A small stand-in for Telegram's telegram-web-app.js, for the local web chat and tests
// (the real script is loaded from telegram.org, which is not reachable offline).
//
// It speaks the same protocol as Telegram's web clients: launch parameters arrive in the
// URL fragment (tgWebAppData, tgWebAppThemeParams, tgWebAppPlatform, tgWebAppVersion), and
// the app talks to its host page with postMessage({eventType, eventData}) — the web chat's
// side panel draws the back button, the main button and alerts. Opened on its own (no
// host), it draws a minimal header and main button inside the page instead.
(function () {
  "use strict";
  if (window.Telegram && window.Telegram.WebApp) return;

  function parseHash() {
    const out = {};
    const raw = location.hash.replace(/^#/, "");
    for (const part of raw.split("&")) {
      if (!part) continue;
      const i = part.indexOf("=");
      const key = decodeURIComponent(i < 0 ? part : part.slice(0, i));
      out[key] = i < 0 ? "" : decodeURIComponent(part.slice(i + 1));
    }
    return out;
  }

  const launch = parseHash();
  const initData = launch.tgWebAppData || "";
  const initDataUnsafe = {};
  for (const [key, value] of new URLSearchParams(initData)) {
    try { initDataUnsafe[key] = (key === "user" || key === "receiver" || key === "chat") ? JSON.parse(value) : value; }
    catch { initDataUnsafe[key] = value; }
  }
  let themeParams = {};
  try { themeParams = JSON.parse(launch.tgWebAppThemeParams || "{}"); } catch { themeParams = {}; }

  const hosted = window.parent !== window;
  const handlers = {};
  const log = [];

  function post(eventType, eventData) {
    log.push({eventType, eventData: eventData || null});
    if (hosted) window.parent.postMessage(JSON.stringify({eventType, eventData: eventData || {}}), "*");
  }

  function emit(name, arg) {
    for (const cb of (handlers[name] || []).slice()) {
      try { cb.call(WebApp, arg); } catch (e) { console.error(e); }
    }
  }

  function luminance(hex) {
    const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
    if (!m) return 1;
    const n = parseInt(m[1], 16);
    return (0.2126 * (n >> 16 & 255) + 0.7152 * (n >> 8 & 255) + 0.0722 * (n & 255)) / 255;
  }

  function applyTheme() {
    const root = document.documentElement.style;
    for (const [key, value] of Object.entries(themeParams)) {
      root.setProperty("--tg-theme-" + key.replace(/_/g, "-"), value);
    }
    WebApp.colorScheme = luminance(themeParams.bg_color) < 0.5 ? "dark" : "light";
    root.setProperty("--tg-color-scheme", WebApp.colorScheme);
    root.setProperty("--tg-viewport-height", window.innerHeight + "px");
    root.setProperty("--tg-viewport-stable-height", window.innerHeight + "px");
  }

  // ---- in-page chrome when there is no host page
  let ownBar = null;
  let ownBack = null;
  function ownChrome() {
    if (hosted || ownBar || !document.body) return;
    ownBack = document.createElement("button");
    ownBack.textContent = "‹ Back";
    ownBack.dataset.testid = "tg-back";
    ownBack.style.cssText = "position:fixed;top:6px;left:6px;z-index:99;display:none;border:0;background:none;font:inherit;color:var(--tg-theme-link-color,#2481cc)";
    ownBack.addEventListener("click", () => emit("backButtonClicked"));
    ownBar = document.createElement("button");
    ownBar.dataset.testid = "tg-main-button";
    ownBar.style.cssText = "position:fixed;left:0;right:0;bottom:0;height:48px;z-index:99;display:none;border:0;font:600 15px system-ui;background:var(--tg-theme-button-color,#2481cc);color:var(--tg-theme-button-text-color,#fff)";
    ownBar.addEventListener("click", () => { if (MainButton.isActive) emit("mainButtonClicked"); });
    document.body.append(ownBack, ownBar);
  }
  function drawOwn() {
    ownChrome();
    if (!ownBar) return;
    ownBack.style.display = BackButton.isVisible ? "block" : "none";
    ownBar.style.display = MainButton.isVisible ? "block" : "none";
    ownBar.textContent = MainButton.isProgressVisible ? "…" : MainButton.text;
    ownBar.disabled = !MainButton.isActive;
  }

  const BackButton = {
    isVisible: false,
    show() { this.isVisible = true; post("web_app_setup_back_button", {is_visible: true}); drawOwn(); return this; },
    hide() { this.isVisible = false; post("web_app_setup_back_button", {is_visible: false}); drawOwn(); return this; },
    onClick(cb) { WebApp.onEvent("backButtonClicked", cb); return this; },
    offClick(cb) { WebApp.offEvent("backButtonClicked", cb); return this; },
  };

  const MainButton = {
    text: "CONTINUE", color: "", textColor: "", isVisible: false, isActive: true, isProgressVisible: false,
    _sync() {
      post("web_app_setup_main_button", {
        is_visible: this.isVisible, is_active: this.isActive, text: this.text,
        color: this.color || themeParams.button_color || "", text_color: this.textColor || themeParams.button_text_color || "",
        is_progress_visible: this.isProgressVisible,
      });
      drawOwn();
      return this;
    },
    setText(text) { this.text = String(text); return this._sync(); },
    setParams(p) {
      if ("text" in p) this.text = String(p.text);
      if ("color" in p) this.color = p.color;
      if ("text_color" in p) this.textColor = p.text_color;
      if ("is_visible" in p) this.isVisible = !!p.is_visible;
      if ("is_active" in p) this.isActive = !!p.is_active;
      return this._sync();
    },
    show() { this.isVisible = true; return this._sync(); },
    hide() { this.isVisible = false; return this._sync(); },
    enable() { this.isActive = true; return this._sync(); },
    disable() { this.isActive = false; return this._sync(); },
    showProgress() { this.isProgressVisible = true; return this._sync(); },
    hideProgress() { this.isProgressVisible = false; return this._sync(); },
    onClick(cb) { WebApp.onEvent("mainButtonClicked", cb); return this; },
    offClick(cb) { WebApp.offEvent("mainButtonClicked", cb); return this; },
  };

  const HapticFeedback = {
    impactOccurred(style) { post("web_app_trigger_haptic_feedback", {type: "impact", impact_style: style}); return this; },
    notificationOccurred(type) { post("web_app_trigger_haptic_feedback", {type: "notification", notification_type: type}); return this; },
    selectionChanged() { post("web_app_trigger_haptic_feedback", {type: "selection_change"}); return this; },
  };

  let popupCallback = null;
  const WebApp = {
    initData, initDataUnsafe, themeParams, colorScheme: "light",
    version: launch.tgWebAppVersion || "7.10", platform: launch.tgWebAppPlatform || "web",
    isExpanded: false, viewportHeight: window.innerHeight, viewportStableHeight: window.innerHeight,
    headerColor: "", backgroundColor: "",
    BackButton, MainButton, HapticFeedback,
    isVersionAtLeast(v) { return parseFloat(this.version) >= parseFloat(v); },
    ready() { post("web_app_ready"); },
    expand() { this.isExpanded = true; post("web_app_expand"); },
    close() { post("web_app_close"); },
    setHeaderColor(color) { this.headerColor = color; post("web_app_set_header_color", {color}); },
    setBackgroundColor(color) { this.backgroundColor = color; post("web_app_set_background_color", {color}); },
    enableClosingConfirmation() { post("web_app_setup_closing_behavior", {need_confirmation: true}); },
    disableClosingConfirmation() { post("web_app_setup_closing_behavior", {need_confirmation: false}); },
    openLink(url) { window.open(url, "_blank", "noopener"); },
    showAlert(message, cb) {
      if (!hosted) { window.alert(message); if (cb) cb(); return; }
      popupCallback = cb ? () => cb() : null;
      post("web_app_open_popup", {message: String(message), buttons: [{id: "ok", type: "ok"}]});
    },
    showConfirm(message, cb) {
      if (!hosted) { const ok = window.confirm(message); if (cb) cb(ok); return; }
      popupCallback = cb ? (id) => cb(id === "ok") : null;
      post("web_app_open_popup", {message: String(message), buttons: [{id: "ok", type: "ok"}, {id: "cancel", type: "cancel"}]});
    },
    onEvent(name, cb) { (handlers[name] = handlers[name] || []).push(cb); },
    offEvent(name, cb) { handlers[name] = (handlers[name] || []).filter((h) => h !== cb); },
    // The stand-in's own record of what the app asked of Telegram (tests read it).
    _log: log,
  };

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return;
    let data;
    try { data = typeof event.data === "string" ? JSON.parse(event.data) : event.data; } catch { return; }
    if (!data || typeof data.eventType !== "string") return;
    const payload = data.eventData || {};
    switch (data.eventType) {
      case "back_button_pressed": emit("backButtonClicked"); break;
      case "main_button_pressed": if (MainButton.isActive) emit("mainButtonClicked"); break;
      case "theme_changed":
        themeParams = payload.theme_params || {};
        WebApp.themeParams = themeParams;
        applyTheme();
        emit("themeChanged");
        break;
      case "popup_closed": {
        const cb = popupCallback; popupCallback = null;
        if (cb) cb(payload.button_id || null);
        break;
      }
    }
  });
  window.addEventListener("resize", () => {
    WebApp.viewportHeight = WebApp.viewportStableHeight = window.innerHeight;
    applyTheme();
    emit("viewportChanged", {isStateStable: true});
  });

  applyTheme();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawOwn);
  window.Telegram = {WebApp};
})();
