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

  // -- analytics: the reports of /admin/api/analytics/..., with the form's filters; charts by Chart.js --------

  var charts = {};
  var OUTCOME_KINDS = [["resolved_bot", "resolved by the bot", "#3c9d5d"], ["resolved_agent", "resolved by a person", "#6ea8fe"],
    ["handed_off", "handed off, unresolved", "#f0ad4e"], ["abandoned", "abandoned", "#b8bfcc"]];
  var PALETTE = ["#6ea8fe", "#d9534f", "#f0ad4e", "#8e6cc4", "#3c9d5d", "#5bc0de", "#888888"];

  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %"; }

  function analyticsQuery(extra) {
    var form = $("#analytics-form"), q = new URLSearchParams();
    ["period", "from", "to", "channel", "language"].forEach(function (k) {
      var v = form.elements.namedItem(k).value;
      if (v) q.set(k, v);
    });
    Object.keys(extra || {}).forEach(function (k) { q.set(k, extra[k]); });
    return q.toString();
  }

  function plot(id, type, labels, datasets, options) {
    if (!window.Chart) return;  // without its charts the page still has the figures and tables
    if (charts[id]) charts[id].destroy();
    charts[id] = new window.Chart(document.getElementById(id), {
      type: type,
      data: { labels: labels, datasets: datasets },
      options: Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, options)
    });
  }

  function stacked() { return { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }; }

  function series(rows, key, scale) {
    return rows.map(function (r) { return r[key] === null ? null : r[key] * (scale || 1); });
  }

  function line(label, data, color) {
    return { label: label, data: data, borderColor: color, backgroundColor: color, spanGaps: true };
  }

  function handoffs(row, reasons) {
    return reasons.reduce(function (n, reason) { return n + row["handoffs_" + reason]; }, 0);
  }

  function figure(label, value) {
    var d = document.createElement("div"), b = document.createElement("strong");
    b.textContent = value;
    d.appendChild(b);
    d.appendChild(document.createTextNode(label));
    $("#analytics-totals").appendChild(d);
  }

  function showOutcomes(j) {
    var t = j.totals, s = j.series, labels = s.map(function (r) { return r.period; });
    $("#analytics-totals").textContent = "";
    figure("episodes", t.outcomes);
    figure("automation rate", pct(t.automation_rate));
    figure("answer rate", pct(t.answer_rate));
    figure("hand-offs", handoffs(t, j.handoff_reasons));
    figure("did that help: yes / no", t.helped_yes + " / " + t.helped_no);
    figure("CSAT, " + t.csat_count + " ratings", t.csat_mean === null ? "–" : t.csat_mean.toFixed(2));
    plot("chart-rates", "line", labels, [
      line("automation rate", series(s, "automation_rate", 100), "#3c9d5d"),
      line("answer rate", series(s, "answer_rate", 100), "#6ea8fe")
    ], { scales: { y: { min: 0, max: 100 } } });
    plot("chart-outcomes", "bar", labels, OUTCOME_KINDS.map(function (k) {
      return { label: k[1], data: series(s, k[0]), backgroundColor: k[2] };
    }), stacked());
    plot("chart-handoffs", "bar", labels, j.handoff_reasons.map(function (reason, i) {
      return { label: reason, data: series(s, "handoffs_" + reason), backgroundColor: PALETTE[i % PALETTE.length] };
    }), stacked());
    plot("chart-csat", "line", labels, [line("CSAT", series(s, "csat_mean"), "#8e6cc4")],
      { scales: { y: { min: 1, max: 5 } } });
    var rows = j.by_channel.map(function (c) { return ["channel " + c.channel, c]; })
      .concat(j.by_language.map(function (l) { return ["language " + (l.language || "unknown"), l]; }));
    fill("#breakdown-table", rows, function (tr, pair) {
      var r = pair[1];
      cell(tr, pair[0]);
      cell(tr, r.outcomes);
      cell(tr, pct(r.automation_rate));
      cell(tr, pct(r.answer_rate));
      cell(tr, handoffs(r, j.handoff_reasons));
      cell(tr, r.csat_mean === null ? "–" : r.csat_mean.toFixed(2) + " (" + r.csat_count + ")");
    });
  }

  function showIntents(j) {
    fill("#intents-table", j.intents, function (tr, r) {
      tr.dataset.intent = r.intent || "";
      cell(tr, r.intent || "(none)");
      cell(tr, r.volume);
      cell(tr, r.answered);
      cell(tr, r.unanswered);
      cell(tr, pct(r.answer_rate));
      cell(tr, r.handoffs);
      cell(tr, r.helped_yes);
      cell(tr, r.helped_no);
    });
  }

  function showFaq(j) {
    fill("#faq-table", j.faq, function (tr, r) {
      cell(tr, r.entry);
      cell(tr, r.question_en || r.question_zh || "(no longer in the FAQ)");
      cell(tr, r.volume);
      cell(tr, r.helped_yes);
      cell(tr, r.helped_no);
      cell(tr, r.handoffs_after);
    });
  }

  function loadAnalytics() {
    var q = analyticsQuery();
    return Promise.all(["outcomes", "intents", "faq"].map(function (name) {
      return api("GET", "/admin/api/analytics/" + name + "?" + q);
    })).then(function (got) {
      showOutcomes(got[0]);
      showIntents(got[1]);
      showFaq(got[2]);
    });
  }

  // A download needs the token, which a plain link cannot send: fetch it, then save it from a blob.
  function downloadCsv(name) {
    var q = analyticsQuery({ format: "csv" });
    return fetch("/admin/api/analytics/" + name + "?" + q, {
      headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) }
    }).then(function (r) {
      if (!r.ok) return r.json().then(function (j) { throw new Error(j.error || "HTTP " + r.status); });
      return r.blob().then(function (blob) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = "shopbot-" + name + (name === "outcomes" ? "-" + $("#analytics-form").period.value : "") + ".csv";
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
      });
    });
  }

  // -- unanswered questions, grouped by meaning; an FAQ entry from a group -----------------------------------

  function field(form, label, name, value, rows) {
    var l = document.createElement("label"), span = document.createElement("span");
    var input = document.createElement(rows ? "textarea" : "input");
    span.textContent = label;
    input.name = name;
    input.value = value || "";
    if (rows) input.rows = rows;
    l.appendChild(span);
    l.appendChild(input);
    form.appendChild(l);
    return input;
  }

  function faqForm(group) {
    var form = document.createElement("form"), lang = group.language === "zh" ? "zh" : "en";
    form.hidden = true;
    field(form, "Question (" + lang + ")", "question", group.examples[0]).required = true;
    field(form, "Answer (" + lang + ")", "answer", "", 4).required = true;
    field(form, "Also asked, one a line", "also_asked", group.examples.join("\n"), 4);
    var submit = document.createElement("button");
    submit.type = "submit";
    submit.textContent = "Add to the FAQ";
    form.appendChild(submit);
    form.onsubmit = function (ev) {
      ev.preventDefault();
      var value = function (name) { return form.elements.namedItem(name).value.trim(); };
      var body = {};
      body["question_" + lang] = value("question");
      body["answer_" + lang] = value("answer");
      body["also_asked_" + lang] = value("also_asked").split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
      api("POST", "/admin/api/faq", body).then(function (r) {
        flash("Added FAQ entry " + r.id, true);
        form.hidden = true;
      }, function (e) { flash("Not added: " + e.message); });
    };
    return form;
  }

  function groupCard(group, i) {
    var card = document.createElement("div"), head = document.createElement("strong");
    var list = document.createElement("ul"), form = faqForm(group);
    card.className = "card group";
    card.dataset.group = i;
    head.textContent = group.count + " unanswered " + (group.count === 1 ? "question" : "questions") +
      " (" + group.language + "), such as:";
    group.examples.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;  // shoppers' words: text, never markup
      list.appendChild(li);
    });
    card.appendChild(head);
    card.appendChild(list);
    button(card, "Add an FAQ entry", function () { form.hidden = !form.hidden; });
    card.appendChild(form);
    return card;
  }

  function loadUnanswered() {
    return api("GET", "/admin/api/analytics/unanswered").then(function (j) {
      var box = $("#unanswered-groups");
      box.textContent = "";
      var when = j.computed_at ? " Grouped " + new Date(j.computed_at * 1000).toLocaleString() + "." : "";
      $("#unanswered-status").textContent = j.status === "computing" && !j.groups.length
        ? "Being grouped now; look again in a minute." + when
        : (j.groups.length ? j.groups.length + " groups, most asked first." : "No unanswered questions.") + when;
      j.groups.forEach(function (g, i) { box.appendChild(groupCard(g, i)); });
    });
  }

  var loaders = {
    channels: loadChannels, queue: loadQueue, audit: loadAudit, analytics: loadAnalytics, unanswered: loadUnanswered
  };

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
  $("#unanswered-refresh").onclick = function () { loadUnanswered().catch(function (e) { flash(e.message); }); };
  $("#analytics-form").onsubmit = function (ev) {
    ev.preventDefault();
    loadAnalytics().catch(function (e) { flash(e.message); });
  };
  document.querySelectorAll("[data-csv]").forEach(function (a) {
    a.onclick = function (ev) {
      ev.preventDefault();
      downloadCsv(a.dataset.csv).catch(function (e) { flash("CSV: " + e.message); });
    };
  });
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
