/* swarmgate dashboard: polls dashboard/api/summary and renders it.
 *
 * Plain JavaScript, no build step. Charts are uPlot (vendored under
 * static/vendor/uplot). The feed is protected like the admin API: when it
 * answers 401/403 the page asks for the admin key, keeps it in
 * sessionStorage (this tab only) and sends it as "Authorization: Bearer".
 *
 * Every figure the page shows carries its raw value in a data-value
 * attribute (the tests compare them with the analytics API).
 */
(function () {
  "use strict";

  var KEY_STORAGE = "swarmgate.dashboard.adminKey";
  var THEME_STORAGE = "swarmgate.dashboard.theme";
  var WINDOW_STORAGE = "swarmgate.dashboard.window";
  var CHART_HEIGHT = 150;
  var FETCH_TIMEOUT_MS = 10000;

  var state = {
    key: sessionStorage.getItem(KEY_STORAGE),
    window: localStorage.getItem(WINDOW_STORAGE),
    refresh: 2000,
    history: 1800,
    instance: null,
    points: [],
    lastT: null,
    latency: "p95",
    charts: {},
    chartProviders: "",
    timer: null,
    inFlight: false,
    lastOk: null,
    blocked: false,
    settingsApplied: false,
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "className") node.className = value;
        else node.setAttribute(name, value === true ? "" : String(value));
      });
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- formatting -------------------------------------------------------------

  function isNum(x) { return typeof x === "number" && isFinite(x); }

  function fmtInt(x) { return isNum(x) ? Math.round(x).toLocaleString("en-US") : "–"; }

  function fmtPct(x) { return isNum(x) ? (x * 100).toFixed(1) + "%" : "–"; }

  function fmtMs(x) {
    if (!isNum(x)) return "–";
    if (x < 10) return x.toFixed(2);
    if (x < 100) return x.toFixed(1);
    return Math.round(x).toLocaleString("en-US");
  }

  function fmtCost(x) {
    if (!isNum(x)) return "–";
    if (x === 0) return "$0";
    if (Math.abs(x) >= 1) return "$" + x.toFixed(2);
    if (Math.abs(x) >= 0.01) return "$" + x.toFixed(4);
    var text = x.toFixed(8).replace(/0+$/, "");
    return "$" + text;
  }

  function fmtRate(x) {
    if (!isNum(x)) return "–";
    return x >= 100 ? Math.round(x).toString() : x.toFixed(x >= 10 ? 1 : 2);
  }

  function fmtTime(seconds) {
    if (!isNum(seconds)) return "–";
    var d = new Date(seconds * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function pad2(n) { return n < 10 ? "0" + n : String(n); }

  function fmtClock(seconds, withSeconds) {
    var d = new Date(seconds * 1000);
    var text = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
    return withSeconds ? text + ":" + pad2(d.getSeconds()) : text;
  }

  function fmtDuration(seconds) {
    if (!isNum(seconds) || seconds < 0) return "–";
    if (seconds < 60) return Math.round(seconds) + "s";
    if (seconds < 3600) return Math.round(seconds / 60) + "m";
    return (seconds / 3600).toFixed(1) + "h";
  }

  function setFigure(node, value, text) {
    if (!node) return;
    node.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
    node.textContent = text;
  }

  // -- theme --------------------------------------------------------------------

  function applyTheme(theme) {
    var root = document.documentElement;
    if (theme === "light" || theme === "dark") root.setAttribute("data-theme", theme);
    else root.removeAttribute("data-theme");
    $("theme-toggle").textContent = "theme: " + (theme || "auto");
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function palette(i) { return cssVar("--s" + ((i % 8) + 1)); }

  // -- feed status, problems, login ---------------------------------------------------

  function setStatus(kind, text) {
    var node = $("feed-status");
    node.setAttribute("data-state", kind);
    node.textContent = text;
  }

  function showProblems(list) {
    var box = $("problems");
    box.textContent = "";
    (list || []).forEach(function (message) { box.appendChild(el("p", null, message)); });
    box.hidden = !list || list.length === 0;
  }

  function showLogin(message, isError) {
    $("login").hidden = false;
    var text = $("login-message");
    text.textContent = message;
    text.setAttribute("data-error", isError ? "true" : "false");
    $("login-key").value = "";
    $("login-key").focus();
  }

  function hideLogin() { $("login").hidden = true; }

  // -- fetching -----------------------------------------------------------------------

  function summaryUrl() {
    var params = new URLSearchParams();
    params.set("window", state.window || "all");
    if (state.lastT !== null) params.set("since", String(state.lastT));
    return "dashboard/api/summary?" + params.toString();
  }

  function fetchSummary() {
    var controller = new AbortController();
    var timeout = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    var headers = { Accept: "application/json" };
    if (state.key) headers.Authorization = "Bearer " + state.key;
    return fetch(summaryUrl(), { headers: headers, cache: "no-store", signal: controller.signal })
      .then(function (response) {
        return response.text().then(function (body) {
          var data = null;
          try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
          return { status: response.status, data: data };
        });
      })
      .finally(function () { clearTimeout(timeout); });
  }

  function errorMessage(data, status) {
    if (data && data.error && data.error.message) return data.error.message;
    return "the gateway answered " + status;
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(tick, delay);
  }

  function tick() {
    if (state.blocked) return;
    if (document.hidden) {
      setStatus("paused", "paused (tab hidden)");
      return;
    }
    if (state.inFlight) return;
    state.inFlight = true;
    fetchSummary()
      .then(function (result) {
        var data = result.data;
        if (result.status === 200 && data) {
          hideLogin();
          render(data);
          state.lastOk = Date.now();
          setStatus("live", "live · " + fmtTime(data.generatedAt));
          return;
        }
        var code = data && data.error ? data.error.code : null;
        if (result.status === 401 || (result.status === 403 && code === "admin_only")) {
          state.blocked = true;
          var hadKey = !!state.key;
          state.key = null;
          sessionStorage.removeItem(KEY_STORAGE);
          $("sign-out").hidden = true;
          setStatus("error", "admin key needed");
          showLogin(hadKey ? errorMessage(data, result.status) : "This gateway's dashboard needs the admin key.", hadKey);
          return;
        }
        if (result.status === 403) {
          state.blocked = true;
          setStatus("error", "forbidden");
          showProblems([errorMessage(data, result.status)]);
          return;
        }
        if (result.status === 400 && code === "invalid_request" && data.error.param === "window") {
          state.window = "all";
          $("window-select").value = "all";
        }
        setStatus("stale", "stale · " + errorMessage(data, result.status));
      })
      .catch(function (error) {
        var last = state.lastOk ? " · last update " + new Date(state.lastOk).toLocaleTimeString("en-GB") : "";
        setStatus("stale", "gateway unreachable" + last);
        if (window.console) console.warn("dashboard feed failed", error);
      })
      .finally(function () {
        state.inFlight = false;
        if (!state.blocked) schedule(state.refresh);
      });
  }

  // -- rendering ------------------------------------------------------------------

  function render(doc) {
    applySettings(doc);
    if (doc.instance !== state.instance) {
      state.instance = doc.instance;
      state.points = [];
    }
    mergePoints(doc.series);
    showProblems(doc.problems);
    var analytics = doc.analytics || null;
    renderKpis(analytics);
    renderProviders(doc.providers || [], analytics);
    renderCharts(doc.providers || []);
    renderBudgets(analytics ? analytics.budgets : null);
    renderCosts(analytics);
    renderEvents(doc.events || []);
    $("footer-version").textContent = "swarmgate-dashboard " + doc.version;
    $("footer-updated").textContent =
      "analytics " + (analytics ? analytics.source + " · since " + fmtTime(analytics.since) : "unavailable") +
      " · updated " + fmtTime(doc.generatedAt);
  }

  function applySettings(doc) {
    var settings = doc.settings || {};
    if (isNum(settings.refreshInterval)) state.refresh = settings.refreshInterval;
    if (isNum(settings.history)) state.history = settings.history / 1000;
    if (!state.settingsApplied) {
      state.settingsApplied = true;
      if (!state.window) {
        state.window = settings.window || "all";
        var select = $("window-select");
        if (!Array.prototype.some.call(select.options, function (o) { return o.value === state.window; })) {
          select.appendChild(el("option", { value: state.window }, "last " + state.window));
        }
        select.value = state.window;
      }
    }
  }

  function mergePoints(series) {
    var fresh = (series && series.points) || [];
    for (var i = 0; i < fresh.length; i++) {
      var point = fresh[i];
      if (state.lastT === null || point.t > state.lastT) state.points.push(point);
    }
    if (state.points.length) state.lastT = state.points[state.points.length - 1].t;
    var horizon = state.lastT === null ? null : state.lastT - state.history;
    if (horizon !== null) {
      var drop = 0;
      while (drop < state.points.length && state.points[drop].t < horizon) drop++;
      if (drop) state.points.splice(0, drop);
    }
  }

  function renderKpis(a) {
    var totals = (a && a.totals) || {};
    setFigure(document.querySelector("#kpi-requests .value"), totals.requests, fmtInt(totals.requests));
    var last = state.points.length ? state.points[state.points.length - 1] : null;
    $("kpi-rate").textContent = (last ? fmtRate(last.rps) : "–") + " req/s now";
    setFigure(document.querySelector("#kpi-success .value"), totals.successRate, fmtPct(totals.successRate));
    $("kpi-failures").textContent =
      fmtInt(totals.failures) + " failed · " + fmtInt(totals.rejected) + " refused · " + fmtInt(totals.cancelled) + " cancelled";
    setFigure($("kpi-p50"), totals.p50Latency, fmtMs(totals.p50Latency));
    setFigure($("kpi-p95"), totals.p95Latency, fmtMs(totals.p95Latency));
    setFigure($("kpi-p99"), totals.p99Latency, fmtMs(totals.p99Latency));
    setFigure(document.querySelector("#kpi-ttft .value"), totals.avgTtft, isNum(totals.avgTtft) ? fmtMs(totals.avgTtft) + " ms" : "–");
    $("kpi-ttft-p95").textContent = "avg · p95 " + (isNum(totals.p95Ttft) ? fmtMs(totals.p95Ttft) + " ms" : "–");
    setFigure(document.querySelector("#kpi-cost .value"), totals.totalCost, fmtCost(totals.totalCost));
    $("kpi-cost-avg").textContent = fmtCost(totals.avgCost) + " per request · " + fmtCost(totals.costSaved) + " saved";
    var cache = (a && a.cache) || {};
    setFigure(document.querySelector("#kpi-cache .value"), cache.hitRatio, fmtPct(cache.hitRatio));
    $("kpi-cache-detail").textContent =
      fmtInt(cache.hits) + " hits · " + fmtInt(cache.misses) + " misses · " + fmtCost(cache.costSaved) + " saved";
  }

  function cell(tag, className, value, text) {
    var node = el(tag, { className: className });
    setFigure(node, value, text);
    return node;
  }

  function renderProviders(providers, a) {
    var figures = {};
    ((a && a.providers) || []).forEach(function (row) { figures[row.name] = row; });
    var body = document.querySelector("#providers-table tbody");
    body.textContent = "";
    var down = 0;
    providers.forEach(function (p) {
      var f = figures[p.name] || {};
      if (p.status === "down") down++;
      var tr = el("tr", { "data-provider": p.name, "data-status": p.status });
      var name = el("td", { className: "name" }, p.name);
      name.appendChild(el("span", { className: "type" }, p.type));
      tr.appendChild(name);

      var health = el("td", { className: "health" });
      var badge = el("span", { className: "badge", "data-status": p.status, title: p.detail || p.status }, p.status);
      health.appendChild(badge);
      if (p.status !== "up" && p.detail) health.appendChild(el("span", { className: "badge-detail" }, p.detail));
      tr.appendChild(health);

      var circuits = el("td", { className: "circuits" });
      if (p.circuits) {
        var models = Object.keys(p.circuits);
        models.forEach(function (model) {
          var c = p.circuits[model];
          var label = models.length > 1 ? model + ": " + c.state : c.state;
          if (c.state === "open" && isNum(c.openUntil)) label += " · " + fmtDuration(c.openUntil - Date.now() / 1000);
          circuits.appendChild(el("span", {
            className: "badge circuit", "data-model": model, "data-state": c.state,
            title: model + (isNum(c.openUntil) ? " · open until " + fmtTime(c.openUntil) : ""),
          }, label.replace("half_open", "half-open")));
        });
      } else {
        circuits.appendChild(el("span", { className: "empty-note", title: "no circuit breaker configured" }, "–"));
      }
      tr.appendChild(circuits);

      tr.appendChild(cell("td", "num requests", f.totalRequests, fmtInt(f.totalRequests)));
      tr.appendChild(cell("td", "num success", f.successRate, fmtPct(f.successRate)));
      tr.appendChild(cell("td", "num p50", f.p50Latency, fmtMs(f.p50Latency)));
      tr.appendChild(cell("td", "num p95", f.p95Latency, fmtMs(f.p95Latency)));
      tr.appendChild(cell("td", "num p99", f.p99Latency, fmtMs(f.p99Latency)));
      tr.appendChild(cell("td", "num ttft", f.p95Ttft, fmtMs(f.p95Ttft)));
      tr.appendChild(cell("td", "num cost", f.totalCost, fmtCost(f.totalCost)));
      var uptime = isNum(p.uptime) ? p.uptime : f.uptime;
      tr.appendChild(cell("td", "num uptime", uptime, fmtPct(uptime)));
      tr.appendChild(cell("td", "num inflight", p.inflight, fmtInt(p.inflight)));
      body.appendChild(tr);
    });
    $("providers-hint").textContent =
      providers.length + " configured" + (down ? " · " + down + " down" : "");
  }

  // -- charts -----------------------------------------------------------------------

  function chartSpecs(names) {
    return {
      rate: {
        el: "chart-rate",
        series: names.map(function (n) { return { label: n }; }).concat([{ label: "errors", error: true }]),
        column: function (name, i) {
          if (i === names.length) return state.points.map(function (p) { return isNum(p.dt) && p.dt > 0 ? p.errors / p.dt : null; });
          return state.points.map(function (p) { var x = p.providers && p.providers[name]; return x ? x.rps : null; });
        },
        value: function (u, v) { return v === null || v === undefined ? "–" : fmtRate(v) + "/s"; },
      },
      latency: {
        el: "chart-latency",
        series: names.map(function (n) { return { label: n }; }),
        column: function (name) {
          var q = state.latency;
          return state.points.map(function (p) { var x = p.providers && p.providers[name]; return x && isNum(x[q]) ? x[q] : null; });
        },
        value: function (u, v) { return v === null || v === undefined ? "–" : fmtMs(v) + " ms"; },
      },
      cost: {
        el: "chart-cost",
        series: names.map(function (n) { return { label: n }; }),
        column: function (name) {
          return state.points.map(function (p) { var x = p.providers && p.providers[name]; return x ? x.spent : null; });
        },
        value: function (u, v) { return v === null || v === undefined ? "–" : fmtCost(v); },
      },
    };
  }

  function chartData(spec, names) {
    var data = [state.points.map(function (p) { return p.t; })];
    spec.series.forEach(function (s, i) { data.push(spec.column(s.error ? null : names[i], i)); });
    return data;
  }

  function buildChart(spec, names) {
    var node = $(spec.el);
    node.textContent = "";
    var axis = cssVar("--axis");
    var grid = cssVar("--grid");
    var series = [{ label: "time", value: function (u, v) { return isNum(v) ? fmtClock(v, true) : "–"; } }].concat(spec.series.map(function (s, i) {
      var color = s.error ? cssVar("--error-line") : palette(i);
      return { label: s.label, stroke: color, width: 1.5, spanGaps: false, value: spec.value, dash: s.error ? [4, 3] : undefined };
    }));
    var axes = [
      {
        stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, space: 70,
        values: function (u, splits) {
          var span = (u.scales.x.max || 0) - (u.scales.x.min || 0);
          return splits.map(function (v) { return fmtClock(v, span < 600); });
        },
      },
      {
        stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 66,
        values: function (u, splits) { return splits.map(function (v) { return shortNumber(v, spec.el); }); },
      },
    ];
    var opts = {
      width: Math.max(200, node.clientWidth),
      height: CHART_HEIGHT,
      series: series,
      axes: axes,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    return new uPlot(opts, chartData(spec, names), node);
  }

  function shortNumber(v, which) {
    if (which === "chart-cost") return fmtCost(v);
    if (Math.abs(v) >= 1000) return (v / 1000).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 1 ? 2 : 1);
  }

  function renderCharts(providers) {
    if (typeof uPlot === "undefined") return;
    var names = providers.filter(function (p) { return p.enabled; }).map(function (p) { return p.name; });
    var signature = names.join("\u0000") + "|" + (document.documentElement.getAttribute("data-theme") || "auto") + "|" + state.latency;
    var specs = chartSpecs(names);
    if (signature !== state.chartProviders) {
      Object.keys(state.charts).forEach(function (k) { state.charts[k].destroy(); });
      state.charts = {};
      Object.keys(specs).forEach(function (k) { state.charts[k] = buildChart(specs[k], names); });
      state.chartProviders = signature;
      state.chartNames = names;
      return;
    }
    Object.keys(specs).forEach(function (k) { state.charts[k].setData(chartData(specs[k], names)); });
  }

  function rebuildCharts() {
    state.chartProviders = "";
    if (state.chartNames) renderCharts(state.chartNames.map(function (n) { return { name: n, enabled: true }; }));
  }

  function resizeCharts() {
    Object.keys(state.charts).forEach(function (k) {
      var chart = state.charts[k];
      var node = chart.root.parentNode;
      if (node && node.clientWidth) chart.setSize({ width: node.clientWidth, height: CHART_HEIGHT });
    });
  }

  // -- budgets, costs, events ----------------------------------------------------------

  function renderBudgets(budgets) {
    var list = $("budget-list");
    list.textContent = "";
    if (!budgets || !budgets.length) {
      list.appendChild(el("li", { className: "empty-note" }, budgets ? "no budget configured" : "no budget plugin active (routing.budgetLimits)"));
      $("budgets-hint").textContent = "";
      return;
    }
    budgets.forEach(function (b) {
      var used = isNum(b.used) ? b.used : (isNum(b.limit) && b.limit > 0 ? b.spent / b.limit : null);
      var li = el("li", { "data-budget": b.name });
      var row = el("div", { className: "row" });
      row.appendChild(el("span", { className: "label", title: b.config_path || b.name }, b.name));
      var figure = el("span", { className: "figure" }, fmtCost(b.spent) + " / " + fmtCost(b.limit) + " · " + fmtPct(used));
      figure.setAttribute("data-value", isNum(b.spent) ? String(b.spent) : "");
      row.appendChild(figure);
      li.appendChild(row);
      var bar = el("div", { className: "bar" });
      var fill = el("span", { "data-level": used >= 1 ? "over" : used >= 0.8 ? "warn" : "ok" });
      fill.style.width = Math.min(100, Math.max(0, (used || 0) * 100)).toFixed(1) + "%";
      bar.appendChild(fill);
      li.appendChild(bar);
      var burn = isNum(b.burn_rate_per_hour) ? "burn " + fmtCost(b.burn_rate_per_hour) + "/h" : "";
      var when = b.exhausts_at ? " · exhausted at " + b.exhausts_at.replace("T", " ").replace(/\+00:00|Z$/, " UTC")
        : (b.resets_at ? " · resets " + b.resets_at.replace("T", " ").replace(/\+00:00|Z$/, " UTC") : "");
      li.appendChild(el("div", { className: "hint" }, (b.period || "") + (burn ? " · " + burn : "") + when));
      list.appendChild(li);
    });
    $("budgets-hint").textContent = budgets.length + " tracked";
  }

  function renderCosts(a) {
    var list = $("cost-list");
    list.textContent = "";
    var rows = ((a && a.providers) || []).slice().sort(function (x, y) { return (y.totalCost || 0) - (x.totalCost || 0); });
    var max = rows.reduce(function (m, r) { return Math.max(m, r.totalCost || 0); }, 0);
    var total = (a && a.totals && a.totals.totalCost) || 0;
    rows.forEach(function (r) {
      var li = el("li", { "data-provider": r.name });
      var row = el("div", { className: "row" });
      row.appendChild(el("span", { className: "label" }, r.name));
      var share = total > 0 ? " · " + fmtPct((r.totalCost || 0) / total) : "";
      var figure = el("span", { className: "figure" }, fmtCost(r.totalCost) + share);
      figure.setAttribute("data-value", String(r.totalCost || 0));
      row.appendChild(figure);
      li.appendChild(row);
      var bar = el("div", { className: "bar" });
      var fill = el("span");
      fill.style.width = (max > 0 ? ((r.totalCost || 0) / max) * 100 : 0).toFixed(1) + "%";
      bar.appendChild(fill);
      li.appendChild(bar);
      list.appendChild(li);
    });
    if (!rows.length) list.appendChild(el("li", { className: "empty-note" }, "no provider"));
    $("costs-hint").textContent = a ? "total " + fmtCost(total) : "";
  }

  function renderEvents(events) {
    var list = $("event-list");
    list.textContent = "";
    if (!events.length) {
      list.appendChild(el("li", { className: "empty-note" }, "no failover, error or alert yet"));
    }
    events.forEach(function (e) {
      var li = el("li", { "data-kind": e.kind, "data-provider": e.provider || "" });
      li.appendChild(el("span", { className: "event-time" }, fmtTime(e.at)));
      li.appendChild(el("span", { className: "event-kind", "data-kind": e.kind, "data-severity": e.severity }, e.kind));
      li.appendChild(el("span", { className: "event-message", title: e.message }, e.message));
      list.appendChild(li);
    });
    var counts = events.reduce(function (c, e) { c[e.kind] = (c[e.kind] || 0) + 1; return c; }, {});
    $("events-hint").textContent = Object.keys(counts).map(function (k) { return counts[k] + " " + k + (counts[k] > 1 ? "s" : ""); }).join(" · ");
  }

  // -- wiring ------------------------------------------------------------------------

  function start() {
    var theme = localStorage.getItem(THEME_STORAGE);
    applyTheme(theme);
    $("theme-toggle").addEventListener("click", function () {
      var current = localStorage.getItem(THEME_STORAGE) || "auto";
      var next = current === "auto" ? "light" : current === "light" ? "dark" : "auto";
      if (next === "auto") localStorage.removeItem(THEME_STORAGE); else localStorage.setItem(THEME_STORAGE, next);
      applyTheme(next === "auto" ? null : next);
      rebuildCharts();
    });
    if (window.matchMedia) {
      window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", rebuildCharts);
    }
    var select = $("window-select");
    if (state.window) select.value = state.window;
    select.addEventListener("change", function () {
      state.window = select.value;
      localStorage.setItem(WINDOW_STORAGE, state.window);
      schedule(0);
    });
    $("latency-select").addEventListener("change", function (event) {
      state.latency = event.target.value;
      rebuildCharts();
    });
    $("login-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var key = $("login-key").value.trim();
      if (!key) return;
      state.key = key;
      sessionStorage.setItem(KEY_STORAGE, key);
      $("sign-out").hidden = false;
      state.blocked = false;
      hideLogin();
      setStatus("connecting", "connecting…");
      schedule(0);
    });
    $("sign-out").hidden = !state.key;
    $("sign-out").addEventListener("click", function () {
      sessionStorage.removeItem(KEY_STORAGE);
      state.key = null;
      $("sign-out").hidden = true;
      state.blocked = false;
      schedule(0);
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(0); });
    if (window.ResizeObserver) {
      var observer = new ResizeObserver(function () { resizeCharts(); });
      observer.observe($("board"));
    } else {
      window.addEventListener("resize", resizeCharts);
    }
    tick();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
