/* The admin page: plain JS over /admin/api and /handoff/api, with the token kept for this tab only. */
(function () {
  "use strict";
  var KEY = "shopbot.admin.token";
  var $ = function (sel) { return document.querySelector(sel); };

  function flash(text, ok) {
    var el = $("#flash");
    el.textContent = text;
    el.className = "msg " + (ok ? "ok" : "err");
    el.hidden = false;
  }

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      headers: Object.assign({ Authorization: "Bearer " + sessionStorage.getItem(KEY) },
        body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (r.status === 401) { signOut(); }
        if (!r.ok) throw new Error(j.error || "HTTP " + r.status);
        return j;
      });
    });
  }

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function fill(table, rows, render) {
    var body = $(table + " tbody");
    body.textContent = "";
    rows.forEach(function (row, i) {
      var tr = document.createElement("tr");
      render(tr, row, i);
      body.appendChild(tr);
    });
    if (!rows.length) cell(body.appendChild(document.createElement("tr")), "nothing here yet").colSpan = 6;
  }

  function button(td, label, onclick) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.onclick = onclick;
    td.appendChild(b);
  }

  function loadChannels() {
    return api("GET", "/admin/api/channels").then(function (j) {
      fill("#channels-table", j.channels, function (tr, c) {
        tr.dataset.key = c.platform + "/" + c.name;
        cell(tr, c.platform);
        cell(tr, c.name);
        var settings = [];
        ["agent_channel", "team_id", "api_base_url"].forEach(function (k) { if (c[k]) settings.push(k + ": " + c[k]); });
        if (c.allowed_origins) settings.push("origins: " + c.allowed_origins.join(", "));
        if (c.desk_agents && c.desk_agents.length) settings.push("desk agents: " + c.desk_agents.join(", "));
        cell(tr, settings.join("; "));
        cell(tr, Object.keys(c.secrets).map(function (k) { return k + " " + c.secrets[k]; }).join(", "));
        cell(tr, c.source + (c.updated_by ? " (" + c.updated_by + ")" : ""));
        var td = cell(tr, "");
        button(td, "Test", function () {
          api("POST", "/admin/api/channels/" + c.platform + "/" + c.name + "/test").then(function (r) {
            flash((r.ok ? "Works: " : "Does not work: ") + r.detail, r.ok);
          }, function (e) { flash(e.message); });
        });
        if (c.source === "admin") {
          button(td, "Remove", function () {
            if (!confirm("Remove " + c.platform + "/" + c.name + "?")) return;
            api("DELETE", "/admin/api/channels/" + c.platform + "/" + c.name).then(function () {
              flash("Removed " + c.platform + "/" + c.name, true);
              loadChannels();
            }, function (e) { flash(e.message); });
          });
        }
      });
    });
  }

  function loadQueue() {
    return api("GET", "/handoff/api/queue").then(function (j) {
      fill("#queue-table", j.waiting, function (tr, q, i) {
        cell(tr, i + 1);
        cell(tr, q.conversation_id);
        cell(tr, q.channel);
        cell(tr, q.reason);
        cell(tr, q.priority);
        cell(tr, Math.round(q.waiting_s) + " s");
      });
    });
  }

  function loadAudit() {
    return api("GET", "/admin/api/audit?limit=200").then(function (j) {
      fill("#audit-table", j.entries, function (tr, a) {
        cell(tr, new Date(a.at * 1000).toLocaleString());
        cell(tr, a.actor + (a.role ? " [" + a.role + "]" : ""));
        cell(tr, a.action);
        cell(tr, a.target);
        cell(tr, a.outcome);
        cell(tr, a.source);
      });
    });
  }

  var loaders = { channels: loadChannels, queue: loadQueue, audit: loadAudit };

  function show(tab) {
    document.querySelectorAll("main section").forEach(function (s) { s.hidden = s.id !== tab; });
    document.querySelectorAll("nav button[data-tab]").forEach(function (b) {
      b.classList.toggle("active", b.dataset.tab === tab);
    });
    return loaders[tab]().catch(function (e) { flash(e.message); });
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    $("#nav").hidden = true;
    $("#who").textContent = "";
    document.querySelectorAll("main section").forEach(function (s) { s.hidden = s.id !== "signin"; });
  }

  function signIn() {
    return api("GET", "/admin/api/me").then(function (me) {
      $("#who").textContent = me.name + " (" + me.role + ")";
      $("#nav").hidden = false;
      $("#flash").hidden = true;
      return show(me.role === "admin" ? "channels" : "queue");
    }, function (e) { signOut(); flash("Not signed in: " + e.message); });
  }

  $("#signin-form").onsubmit = function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("#token").value.trim());
    $("#token").value = "";
    signIn();
  };
  $("#signout").onclick = signOut;
  $("#queue-refresh").onclick = loadQueue;
  document.querySelectorAll("nav button[data-tab]").forEach(function (b) {
    b.onclick = function () { show(b.dataset.tab); };
  });

  var form = $("#channel-form");
  function showFields() {
    var p = form.platform.value;
    form.querySelectorAll("[data-for]").forEach(function (l) {
      l.hidden = l.dataset.for.split(" ").indexOf(p) < 0;
    });
  }
  form.platform.onchange = showFields;
  showFields();
  form.onsubmit = function (ev) {
    ev.preventDefault();
    var p = form.platform.value, body = {};
    form.querySelectorAll("label[data-for]").forEach(function (l) {
      var input = l.querySelector("input");
      if (l.hidden || !input.value.trim()) return;
      body[input.name] = input.name === "allowed_origins"
        ? input.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean) : input.value.trim();
    });
    api("PUT", "/admin/api/channels/" + p + "/" + encodeURIComponent(form.elements.namedItem("name").value.trim()), body).then(function (r) {
      var extra = Object.keys(r.generated || {}).map(function (k) { return " New " + k + " (shown once): " + r.generated[k]; });
      if (r.checked) extra.push(" " + (r.checked.ok ? "Works: " : "Does not work: ") + r.checked.detail);
      flash("Saved " + p + "/" + r.name + "." + extra.join(""), true);
      form.reset();
      showFields();
      loadChannels();
    }, function (e) { flash("Not saved: " + e.message); });
  };

  // "Add to Slack": an admin asks for a one-time install link (audited), then the browser follows it.
  $("#add-to-slack-button").onclick = function () {
    api("POST", "/admin/api/slack/install-link").then(function (r) {
      window.location.assign(r.url);
    }, function (e) { flash("Add to Slack: " + e.message); });
  };

  if (sessionStorage.getItem(KEY)) signIn(); else signOut();
})();
