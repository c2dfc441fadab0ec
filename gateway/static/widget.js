/* Shop chat widget. Embed with one tag:
 *   <script src="https://YOUR-GATEWAY/static/widget.js" async></script>
 * Options as data- attributes on that tag: data-locale="zh|en" (default: the browser's),
 * data-title="...", data-open="true" (start opened).
 * Plain JS, no build step, no dependencies.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.src, location.href).origin;
  var opts = script.dataset || {};
  var lang = (opts.locale || navigator.language || "en").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  var T = {
    en: { title: "Chat with us", placeholder: "Type a message…", send: "Send", bot: "Assistant", agent: "Agent",
          system: "Notice", you: "You", typing: "typing…", offline: "Reconnecting…", greeting:
          "Hi! Ask me about your order, delivery, refunds, payments or your account.", error: "Not sent: " },
    zh: { title: "在线客服", placeholder: "输入消息…", send: "发送", bot: "智能助手", agent: "人工客服",
          system: "通知", you: "我", typing: "正在输入…", offline: "正在重新连接…", greeting:
          "您好!可以问我订单、配送、退款、支付或账户的问题。", error: "发送失败:" }
  }[lang];
  var KEY = "shopbot.session";
  var state = { session: null, lastId: null, ws: null, retry: 0, typingTimer: null, shown: {} };

  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = base + "/static/widget.css";
  document.head.appendChild(css);

  var root = document.createElement("div");
  root.className = "sb-widget" + (opts.open === "true" ? " sb-open" : "");
  root.innerHTML =
    '<button class="sb-toggle" type="button" aria-label="' + T.title + '">💬</button>' +
    '<section class="sb-panel" role="dialog" aria-label="' + T.title + '">' +
    '<header class="sb-header"><span>' + (opts.title || T.title) + '</span><span class="sb-status"></span></header>' +
    '<ol class="sb-log" aria-live="polite"></ol>' +
    '<div class="sb-typing" hidden>' + T.bot + " " + T.typing + "</div>" +
    '<div class="sb-quick"></div>' +
    '<form class="sb-form"><textarea class="sb-input" rows="1" maxlength="4000" placeholder="' + T.placeholder +
    '"></textarea><button class="sb-send" type="submit">' + T.send + "</button></form></section>";
  (document.body || document.documentElement).appendChild(root);
  var logEl = root.querySelector(".sb-log"), input = root.querySelector(".sb-input");
  var typingEl = root.querySelector(".sb-typing"), quickEl = root.querySelector(".sb-quick");
  var statusEl = root.querySelector(".sb-status");

  root.querySelector(".sb-toggle").onclick = function () {
    root.classList.toggle("sb-open");
    if (root.classList.contains("sb-open")) input.focus();
  };

  function addLine(from, text, id) {
    if (id && state.shown[id]) return;
    if (id) state.shown[id] = true;
    var li = document.createElement("li");
    li.className = "sb-msg sb-from-" + from;
    if (id) li.dataset.id = id;
    var who = document.createElement("span");
    who.className = "sb-who";
    who.textContent = from === "shopper" ? T.you : T[from] || from;
    var body = document.createElement("span");
    body.className = "sb-text";
    body.textContent = text;
    li.appendChild(who);
    li.appendChild(body);
    logEl.appendChild(li);
    logEl.scrollTop = logEl.scrollHeight;
    return li;
  }

  // A line the shopper typed has been recorded as message `id`: mark it, so the
  // history and the socket do not show it a second time. False if no such line.
  function confirmSent(cmid, id) {
    var li = cmid && logEl.querySelector('[data-cmid="' + cmid + '"]');
    if (!li) return false;
    li.dataset.id = id;
    state.shown[id] = true;
    li.classList.remove("sb-pending");
    return true;
  }

  function showQuick(replies) {
    quickEl.innerHTML = "";
    (replies || []).forEach(function (q) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sb-quick-reply";
      b.textContent = q;
      b.onclick = function () { send(q); };
      quickEl.appendChild(b);
    });
  }

  function typing(on) {
    typingEl.hidden = !on;
    clearTimeout(state.typingTimer);
    if (on) state.typingTimer = setTimeout(function () { typingEl.hidden = true; }, 20000);
  }

  function receive(m) {
    if (m.id) state.lastId = m.id;  // messages arrive in log order
    if (m.from === "shopper") {
      if (confirmSent(m.client_message_id, m.id)) return;
      addLine("shopper", m.text, m.id);
      return;
    }
    typing(false);
    addLine(m.from, m.text, m.id);
    showQuick(m.quick_replies);
  }

  function api(path, body) {
    return fetch(base + path, {
      method: body === undefined ? "GET" : "POST",
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (r.ok) return j;
        var e = new Error(j.error || r.status);
        e.polite = j.message;  // a message meant for the shopper (e.g. "slow down"), shown as it is
        throw e;
      });
    });
  }

  function ensureSession() {
    var sid = localStorage.getItem(KEY);
    if (sid) return Promise.resolve(sid);
    return api("/web/sessions", { locale: lang }).then(function (j) {
      localStorage.setItem(KEY, j.session_id);
      return j.session_id;
    });
  }

  function history() {
    var q = "/web/messages?session_id=" + encodeURIComponent(state.session) +
      (state.lastId ? "&after=" + encodeURIComponent(state.lastId) : "");
    return api(q).then(function (j) { j.messages.forEach(receive); }, function (e) {
      if (String(e.message).indexOf("unknown session") >= 0) {  // expired: start afresh
        localStorage.removeItem(KEY);
        return ensureSession().then(function (sid) { state.session = sid; });
      }
      throw e;
    });
  }

  function connect() {
    var url = base.replace(/^http/, "ws") + "/web/ws?session_id=" + encodeURIComponent(state.session) +
      (state.lastId ? "&after=" + encodeURIComponent(state.lastId) : "");
    var ws = new WebSocket(url);
    state.ws = ws;
    ws.onopen = function () { state.retry = 0; statusEl.textContent = ""; root.classList.add("sb-online"); };
    ws.onmessage = function (ev) {
      var m = JSON.parse(ev.data);
      if (m.type === "message") receive(m);
      else if (m.type === "typing") typing(true);
      else if (m.type === "ack") {
        confirmSent(m.client_message_id, m.message_id);
      } else if (m.type === "error") {
        var bad = m.client_message_id && logEl.querySelector('[data-cmid="' + m.client_message_id + '"]');
        if (bad) bad.classList.add("sb-failed");
        addLine("system", m.message || T.error + m.reason);
      }
    };
    ws.onclose = function () {
      root.classList.remove("sb-online");
      statusEl.textContent = T.offline;
      state.ws = null;
      var delay = Math.min(30000, 500 * Math.pow(2, state.retry++));
      // Catch up over HTTP first, so nothing sent while the socket was down is lost.
      setTimeout(function () { history().then(connect, connect); }, delay);
    };
  }

  function send(text) {
    text = (text || "").trim();
    if (!text) return;
    var cmid = "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    var li = addLine("shopper", text);
    li.dataset.cmid = cmid;
    li.classList.add("sb-pending");
    showQuick([]);
    var frame = { type: "message", text: text, client_message_id: cmid, locale: lang };
    if (state.ws && state.ws.readyState === 1) {
      state.ws.send(JSON.stringify(frame));
    } else {
      api("/web/messages", { session_id: state.session, text: text, client_message_id: cmid, locale: lang })
        .then(function (j) { confirmSent(cmid, j.message_id); },
              function (e) { li.classList.add("sb-failed"); addLine("system", e.polite || T.error + e.message); });
    }
  }

  root.querySelector(".sb-form").onsubmit = function (ev) {
    ev.preventDefault();
    send(input.value);
    input.value = "";
  };
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      root.querySelector(".sb-form").requestSubmit();
    }
  });

  ensureSession()
    .then(function (sid) { state.session = sid; return history(); })
    .then(function () {
      if (!logEl.children.length) addLine("bot", T.greeting);
      connect();
    })
    .catch(function (e) { statusEl.textContent = T.offline; setTimeout(function () { location.reload(); }, 10000); });

  window.ShopChat = { send: send, session: function () { return state.session; } };
})();
