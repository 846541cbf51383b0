// Draws the figures of the placewise dashboard from its JSON API. Every page with figures
// loads this file after ECharts; <body data-page> names the page. When all figures are
// drawn, <body> gets data-ready="true" (or data-ready="error" with a message on the page).
"use strict";

(function () {
  const charts = [];
  const colors = {
    control: "#c0504d",
    treatment: "#2e8b57",
    plan: "#1d5fa8",
    neutral: "#7a8793",
  };

  function byId(id) {
    return document.getElementById(id);
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  // Formats a number with a fixed count of decimals, or a dash for a missing value.
  function number(value, digits) {
    if (!isNumber(value)) return "–";
    return value.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  }

  function percent(share, digits) {
    return isNumber(share) ? number(100 * share, digits === undefined ? 1 : digits) + "%" : "–";
  }

  function percentValue(value) {
    return isNumber(value) ? number(value, 2) + "%" : "–";
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function showError(error) {
    const main = document.querySelector("main");
    const note = element("p", String(error.message || error), "error");
    note.setAttribute("role", "alert");
    main.insertBefore(note, main.children[1] || null);
    document.body.dataset.ready = "error";
  }

  // Draws an ECharts option into the element of that id, without animation so that the
  // figure is complete as soon as this returns.
  function draw(id, option) {
    const node = byId(id);
    if (!node) return null;
    const chart = echarts.init(node, null, { renderer: "canvas" });
    chart.setOption(Object.assign({ animation: false }, option));
    charts.push(chart);
    return chart;
  }

  window.addEventListener("resize", function () {
    charts.forEach(function (chart) {
      chart.resize();
    });
  });

  // Replaces a figure's box with a note, for data the database does not hold yet.
  function replaceWithNote(id, text) {
    const node = byId(id);
    if (node) node.replaceWith(element("p", text, "note"));
  }

  // Fills a table. Each column has a label, a value(row) function returning text or a DOM
  // node, and numeric: true for right-aligned figures.
  function fillTable(id, columns, rows) {
    const table = byId(id);
    if (!table) return;
    table.replaceChildren();
    const head = element("thead");
    const headRow = element("tr");
    columns.forEach(function (column) {
      const cell = element("th", column.label, column.numeric ? "number" : "");
      cell.setAttribute("scope", "col");
      if (column.key) cell.dataset.key = column.key;
      headRow.appendChild(cell);
    });
    head.appendChild(headRow);
    const body = element("tbody");
    rows.forEach(function (row) {
      const tableRow = element("tr");
      columns.forEach(function (column) {
        const value = column.value(row);
        const cell = element("td", null, column.numeric ? "number" : "");
        if (value instanceof Node) cell.appendChild(value);
        else cell.textContent = value === undefined || value === null ? "–" : String(value);
        tableRow.appendChild(cell);
      });
      body.appendChild(tableRow);
    });
    table.append(head, body);
  }

  function fillTiles(id, tiles) {
    const box = byId(id);
    if (!box) return;
    box.replaceChildren();
    tiles.forEach(function (tile) {
      const node = element("div", null, "tile");
      node.appendChild(element("div", tile.label, "label"));
      node.appendChild(element("div", tile.value, "value"));
      if (tile.detail) node.appendChild(element("div", tile.detail, "detail"));
      box.appendChild(node);
    });
  }

  function link(href, text) {
    const anchor = element("a", text);
    anchor.href = href;
    return anchor;
  }

  function barOption(categories, series, valueName, horizontal) {
    // On a phone, several category names side by side overlap unless turned.
    const turn = !horizontal && categories.length > 3 && window.innerWidth < 600 ? 40 : 0;
    const categoryAxis = { type: "category", data: categories, axisLabel: { interval: 0, rotate: turn } };
    const valueAxis = horizontal
      ? { type: "value", name: valueName, nameLocation: "middle", nameGap: 28 }
      : { type: "value", name: valueName, nameTextStyle: { align: "left" } };
    return {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: series.length > 1 ? { top: 0 } : undefined,
      grid: { left: 8, right: 24, top: series.length > 1 ? 36 : 28, bottom: horizontal ? 32 : 8, containLabel: true },
      xAxis: horizontal ? valueAxis : categoryAxis,
      yAxis: horizontal ? Object.assign(categoryAxis, { inverse: true }) : valueAxis,
      series: series.map(function (s) {
        return { type: "bar", name: s.name, data: s.data, itemStyle: { color: s.color } };
      }),
    };
  }

  // ---- Overview ----

  async function overview() {
    const data = await api("/api/overview");
    const counts = data.counts;
    fillTiles("counts", [
      { label: "Services", value: number(counts.services, 0) },
      { label: "Regions", value: number(counts.regions, 0) },
      {
        label: "Telemetry rows",
        value: number(counts.telemetry_rows, 0),
        detail:
          number(counts.traffic_rows, 0) + " traffic, " + number(counts.placement_rows, 0) +
          " placement, " + number(counts.latency_rows, 0) + " RTT",
      },
      { label: "Models", value: number(counts.models, 0), detail: number(counts.plans, 0) + " plans" },
      {
        label: "Latency-critical",
        value: percent(data.latency_critical.share),
        detail: number(data.latency_critical.services, 0) + " services",
      },
    ]);
    draw(
      "memory-tiers",
      barOption(
        data.memory_tiers.map(function (t) { return t.memory_mb + " MB"; }),
        [{ name: "services", data: data.memory_tiers.map(function (t) { return t.services; }), color: colors.plan }],
        "services",
        false
      )
    );
    const critical = data.latency_critical.services;
    draw("critical-share", {
      tooltip: { trigger: "item", formatter: "{b}: {c} services ({d}%)" },
      legend: { bottom: 0 },
      series: [
        {
          type: "pie",
          radius: ["40%", "70%"],
          data: [
            { name: "latency-critical", value: critical, itemStyle: { color: colors.control } },
            { name: "other", value: counts.services - critical, itemStyle: { color: colors.neutral } },
          ],
          label: { formatter: "{b}\n{d}%" },
        },
      ],
    });
    draw(
      "top-services",
      barOption(
        data.top_services.map(function (s) { return s.service_name; }),
        [{
          name: "requests/s",
          data: data.top_services.map(function (s) { return Number(s.mean_requests_per_second.toFixed(1)); }),
          color: colors.plan,
        }],
        "requests/s",
        true
      )
    );
    const hours = data.traffic_by_hour.hours.map(function (h) { return String(h).padStart(2, "0") + ":00"; });
    draw("traffic-by-hour", {
      tooltip: { trigger: "axis", valueFormatter: function (v) { return number(v, 0) + " requests/s"; } },
      legend: { type: "scroll", top: 0 },
      grid: { left: 8, right: 16, top: 40, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: hours, name: "UTC" },
      yAxis: { type: "value", name: "requests/s" },
      series: data.traffic_by_hour.series.map(function (s) {
        return { type: "line", name: s.origin_region, data: s.mean_requests_per_second, showSymbol: false };
      }),
    });
  }

  // ---- A/B test ----

  const KNOWN_DOCUMENT_KEYS = ["control_metrics", "treatment_metrics"];

  async function abTest() {
    const data = await api("/api/ab-test");
    const documentValue = data.document || {};
    const improvements = documentValue.improvements || {};
    // Significance comes from the tests with the service as the unit: the request-level
    // test of the original study treats dependent requests as independent.
    const serviceTests = documentValue.service_level_tests || [];
    const rejecting = serviceTests.filter(function (t) { return t.is_significant; }).length;
    const undefinedTests = serviceTests.filter(function (t) { return !isNumber(t.p_value); }).length;
    let significant = "–";
    if (serviceTests.length > 0 && undefinedTests === serviceTests.length) {
      significant = "no difference";
    } else if (serviceTests.length > 0 && rejecting === serviceTests.length) {
      significant = "yes";
    } else if (serviceTests.length > 0 && rejecting === 0) {
      significant = "no";
    } else if (serviceTests.length > 0) {
      significant = "mixed";
    }
    let testDetail = serviceTests
      .filter(function (t) { return isNumber(t.p_value); })
      .map(function (t) { return t.method.split(" on ")[0] + ": p = " + t.p_value.toPrecision(3); })
      .join("; ");
    if (serviceTests.length > 0 && undefinedTests === serviceTests.length) {
      testDetail = "every service's mean latency is the same under both arms";
    }
    byId("ab-summary").textContent = data.summary;
    fillTiles("ab-cards", [
      { label: "Latency reduction", value: percentValue(improvements.latency_improvement_pct), detail: "positive: the treatment is faster" },
      { label: "Cost reduction", value: percentValue(improvements.cost_improvement_pct), detail: "positive: the treatment is cheaper" },
      {
        label: "Critical service latency reduction",
        value: percentValue(improvements.critical_latency_improvement_pct),
        detail: "latency-critical services only",
      },
      {
        label: "Significant, services as the unit?",
        value: significant,
        detail: testDetail,
      },
    ]);
    const armNames = ["control: " + data.control, "treatment: " + data.treatment];
    fillTable(
      "ab-comparison",
      [
        { label: "Metric", value: function (r) { return r.metric; } },
        { label: "Control (" + data.control + ")", numeric: true, value: function (r) { return number(r.control, 2); } },
        { label: "Treatment (" + data.treatment + ")", numeric: true, value: function (r) { return number(r.treatment, 2); } },
        { label: "Change", numeric: true, value: function (r) { return isNumber(r.change_pct) ? number(r.change_pct, 2) + "%" : "–"; } },
      ],
      data.comparison
    );
    const metric = function (key) {
      return data.comparison.find(function (r) { return r.key === key; }) || {};
    };
    const armBars = function (id, key, unit) {
      const row = metric(key);
      const option = barOption(armNames, [{ name: unit, data: [row.control, row.treatment] }], unit, false);
      option.series[0].data = [
        { value: row.control, itemStyle: { color: colors.control } },
        { value: row.treatment, itemStyle: { color: colors.treatment } },
      ];
      option.series[0].label = { show: true, position: "top", formatter: function (p) { return number(p.value, 2); } };
      draw(id, option);
    };
    armBars("ab-latency", "avg_latency_ms", "ms");
    armBars("ab-cost", "mean_cost_per_service_usd", "USD/month");
    drawHistogram(data.latency_histogram, data);
    drawServiceScatter(data);
    fillTable(
      "ab-services",
      [
        { label: "Service", value: function (s) { return s.service_name || "service " + s.service_id; } },
        { label: "Critical", value: function (s) { return s.critical ? "yes" : "no"; } },
        { label: "Control requests", numeric: true, value: function (s) { return number(s.control.requests, 0); } },
        { label: "Control mean ms", numeric: true, value: function (s) { return number(s.control.mean_latency_ms, 2); } },
        { label: "Control p95 ms", numeric: true, value: function (s) { return number(s.control.p95_latency_ms, 2); } },
        { label: "Control USD/month", numeric: true, value: function (s) { return number(s.control.monthly_cost_usd, 0); } },
        { label: "Treatment requests", numeric: true, value: function (s) { return number(s.treatment.requests, 0); } },
        { label: "Treatment mean ms", numeric: true, value: function (s) { return number(s.treatment.mean_latency_ms, 2); } },
        { label: "Treatment p95 ms", numeric: true, value: function (s) { return number(s.treatment.p95_latency_ms, 2); } },
        { label: "Treatment USD/month", numeric: true, value: function (s) { return number(s.treatment.monthly_cost_usd, 0); } },
      ],
      data.services
    );
    renderDocument(documentValue);
  }

  function drawHistogram(histogram, data) {
    const lows = [];
    const highs = {};
    ["control", "treatment"].forEach(function (arm) {
      histogram[arm].forEach(function (bin) {
        if (lows.indexOf(bin.bin_low_ms) < 0) lows.push(bin.bin_low_ms);
        highs[bin.bin_low_ms] = bin.bin_high_ms;
      });
    });
    if (lows.length === 0) {
      replaceWithNote("ab-histogram", "The experiment stored no latency histogram.");
      replaceWithNote("ab-ecdf", "The experiment stored no latency histogram.");
      return;
    }
    lows.sort(function (a, b) { return a - b; });
    const labels = lows.map(function (low) { return number(low, 0) + "–" + number(highs[low], 0); });
    const countsOf = function (arm) {
      const byLow = {};
      histogram[arm].forEach(function (bin) { byLow[bin.bin_low_ms] = bin.requests; });
      return lows.map(function (low) { return byLow[low] || 0; });
    };
    const armSeries = [
      { name: "control: " + data.control, arm: "control", color: colors.control },
      { name: "treatment: " + data.treatment, arm: "treatment", color: colors.treatment },
    ];
    const option = barOption(
      labels,
      armSeries.map(function (s) { return { name: s.name, data: countsOf(s.arm), color: s.color }; }),
      "requests",
      false
    );
    option.xAxis.axisLabel = { rotate: 45 };
    draw("ab-histogram", option);

    draw("ab-ecdf", {
      tooltip: { trigger: "axis", valueFormatter: function (v) { return percent(v); } },
      legend: { top: 0 },
      grid: { left: 8, right: 24, top: 36, bottom: 32, containLabel: true },
      xAxis: { type: "value", name: "ms", scale: true, nameLocation: "middle", nameGap: 28 },
      yAxis: { type: "value", name: "share", min: 0, max: 1, nameTextStyle: { align: "left" } },
      series: armSeries.map(function (s) {
        const bins = histogram[s.arm].slice().sort(function (a, b) { return a.bin_low_ms - b.bin_low_ms; });
        const total = bins.reduce(function (sum, b) { return sum + b.requests; }, 0) || 1;
        let running = 0;
        const points = bins.length ? [[bins[0].bin_low_ms, 0]] : [];
        bins.forEach(function (b) {
          running += b.requests;
          points.push([b.bin_high_ms, running / total]);
        });
        return { type: "line", name: s.name, data: points, showSymbol: false, itemStyle: { color: s.color } };
      }),
    });
  }

  function drawServiceScatter(data) {
    const points = data.services
      .filter(function (s) { return isNumber(s.control.mean_latency_ms) && isNumber(s.treatment.mean_latency_ms); })
      .map(function (s) {
        return {
          name: s.service_name || "service " + s.service_id,
          value: [s.control.mean_latency_ms, s.treatment.mean_latency_ms],
          itemStyle: { color: s.critical ? colors.control : colors.plan },
        };
      });
    if (points.length === 0) {
      replaceWithNote("ab-services-chart", "The experiment stored no service-level results.");
      return;
    }
    const top = Math.max.apply(null, points.map(function (p) { return Math.max(p.value[0], p.value[1]); }));
    draw("ab-services-chart", {
      tooltip: {
        trigger: "item",
        formatter: function (p) {
          if (!p.data || !p.data.name) return "";
          return p.data.name + "<br>control " + number(p.value[0], 2) + " ms<br>treatment " + number(p.value[1], 2) + " ms";
        },
      },
      grid: { left: 8, right: 24, top: 28, bottom: 32, containLabel: true },
      xAxis: { type: "value", name: "control ms", min: 0, nameLocation: "middle", nameGap: 28 },
      yAxis: { type: "value", name: "treatment ms", min: 0, nameTextStyle: { align: "left" } },
      series: [
        { type: "scatter", data: points, symbolSize: 8 },
        { type: "line", data: [[0, 0], [top, top]], showSymbol: false, silent: true, lineStyle: { type: "dashed", color: colors.neutral }, tooltip: { show: false } },
      ],
    });
  }

  function humanize(key) {
    const text = String(key).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function scalarText(value) {
    if (isNumber(value)) return Number.isInteger(value) ? number(value, 0) : String(Number(value.toPrecision(6)));
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (value === null || value === undefined) return "–";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // Renders every key of the experiment's document that the figures above do not show, as
  // tables, and draws interval charts for lists or objects of rows with lower and upper
  // bounds.
  function renderDocument(documentValue) {
    const box = byId("ab-document");
    if (!box) return;
    const grid = element("div", null, "grid");
    let index = 0;
    Object.keys(documentValue).forEach(function (key) {
      if (KNOWN_DOCUMENT_KEYS.indexOf(key) >= 0) return;
      const value = documentValue[key];
      const card = element("section", null, "card wide");
      card.appendChild(element("h2", humanize(key)));
      card.appendChild(renderValue(value, card, "ab-document-" + index++));
      grid.appendChild(card);
    });
    box.appendChild(grid);
    pendingIntervals.forEach(function (drawInterval) { drawInterval(); });
    pendingIntervals.length = 0;
  }

  const pendingIntervals = [];

  function renderValue(value, card, id) {
    const scroll = element("div", null, "table-scroll");
    const table = element("table");
    scroll.appendChild(table);
    if (Array.isArray(value) && value.length && value.every(function (v) { return v && typeof v === "object" && !Array.isArray(v); })) {
      const keys = [];
      value.forEach(function (row) { Object.keys(row).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
      const head = element("tr");
      keys.forEach(function (k) { head.appendChild(element("th", humanize(k))); });
      table.appendChild(element("thead")).appendChild(head);
      const body = table.appendChild(element("tbody"));
      value.forEach(function (row) {
        const tr = body.appendChild(element("tr"));
        keys.forEach(function (k) { tr.appendChild(element("td", scalarText(row[k]), isNumber(row[k]) ? "number" : "")); });
      });
      const interval = intervalFields(keys, value);
      if (interval) {
        const chartBox = element("div", null, "chart");
        chartBox.id = id;
        chartBox.style.height = Math.max(240, 28 * value.length + 80) + "px";
        card.appendChild(chartBox);
        pendingIntervals.push(function () { drawIntervals(id, value, interval); });
      }
      return scroll;
    }
    const body = table.appendChild(element("tbody"));
    const addRows = function (object, prefix) {
      Object.keys(object).forEach(function (k) {
        const v = object[k];
        const name = prefix ? prefix + " · " + humanize(k) : humanize(k);
        if (v && typeof v === "object" && !Array.isArray(v)) {
          addRows(v, name);
          return;
        }
        const tr = body.appendChild(element("tr"));
        tr.appendChild(element("th", name));
        tr.appendChild(element("td", scalarText(v), isNumber(v) ? "number" : ""));
      });
    };
    if (value && typeof value === "object" && !Array.isArray(value)) {
      addRows(value, "");
      // An object of intervals keyed by metric, such as the bootstrap's, gets a chart too.
      const rows = Object.keys(value)
        .filter(function (k) { return value[k] && typeof value[k] === "object" && !Array.isArray(value[k]); })
        .map(function (k) { return Object.assign({ metric: humanize(k) }, value[k]); });
      const keys = [];
      rows.forEach(function (row) { Object.keys(row).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
      const interval = rows.length ? intervalFields(keys, rows) : null;
      if (interval) {
        const chartBox = element("div", null, "chart");
        chartBox.id = id;
        chartBox.style.height = Math.max(240, 28 * rows.length + 80) + "px";
        card.appendChild(chartBox);
        pendingIntervals.push(function () { drawIntervals(id, rows, interval); });
      }
    } else {
      const tr = body.appendChild(element("tr"));
      tr.appendChild(element("td", scalarText(value)));
    }
    return scroll;
  }

  // Finds the fields of a lower bound, an upper bound, an estimate and a label in rows of
  // a list, or returns null when the rows have no numeric bounds.
  function intervalFields(keys, rows) {
    const numeric = function (k) { return rows.every(function (r) { return r[k] === undefined || r[k] === null || isNumber(r[k]); }); };
    const find = function (pattern) {
      return keys.find(function (k) { return pattern.test(k) && numeric(k); });
    };
    const low = find(/(^|_)(ci_)?(low|lower|lo)(_|$)|lower/);
    const high = find(/(^|_)(ci_)?(high|upper|hi)(_|$)|upper/);
    if (!low || !high) return null;
    const estimate = find(/change|mean|estimate|diff|delta|effect|median|value/);
    const label = keys.find(function (k) { return rows.every(function (r) { return typeof r[k] === "string"; }); });
    return { low: low, high: high, estimate: estimate, label: label };
  }

  function drawIntervals(id, rows, fields) {
    const labels = rows.map(function (r, i) { return fields.label ? r[fields.label] : "#" + (i + 1); });
    const data = rows.map(function (r, i) { return [i, r[fields.low], r[fields.high]]; });
    const series = [
      {
        type: "custom",
        name: humanize(fields.low) + " to " + humanize(fields.high),
        renderItem: function (params, api) {
          const start = api.coord([api.value(1), api.value(0)]);
          const end = api.coord([api.value(2), api.value(0)]);
          return {
            type: "group",
            children: [
              { type: "line", shape: { x1: start[0], y1: start[1], x2: end[0], y2: end[1] }, style: { stroke: colors.plan, lineWidth: 2 } },
              { type: "line", shape: { x1: start[0], y1: start[1] - 5, x2: start[0], y2: start[1] + 5 }, style: { stroke: colors.plan, lineWidth: 2 } },
              { type: "line", shape: { x1: end[0], y1: end[1] - 5, x2: end[0], y2: end[1] + 5 }, style: { stroke: colors.plan, lineWidth: 2 } },
            ],
          };
        },
        encode: { x: [1, 2], y: 0 },
        data: data,
      },
    ];
    if (fields.estimate) {
      series.push({
        type: "scatter",
        name: humanize(fields.estimate),
        data: rows.map(function (r, i) { return [r[fields.estimate], i]; }),
        itemStyle: { color: colors.control },
      });
    }
    draw(id, {
      tooltip: {
        trigger: "item",
        formatter: function (p) {
          const row = rows[Array.isArray(p.value) && p.seriesType === "custom" ? p.value[0] : p.value[1]];
          if (!row) return "";
          return Object.keys(row).map(function (k) { return humanize(k) + ": " + scalarText(row[k]); }).join("<br>");
        },
      },
      grid: { left: 8, right: 24, top: 16, bottom: 8, containLabel: true },
      xAxis: { type: "value", scale: true },
      yAxis: { type: "category", data: labels, inverse: true },
      series: series,
    });
  }

  // ---- Regions ----

  async function regions() {
    const data = await api("/api/regions");
    const codes = data.regions.map(function (r) { return r.region; });
    const values = data.rtt.map(function (c) { return c.mean_ms; });
    const cells = data.rtt.map(function (c) {
      return [codes.indexOf(c.target_region), codes.indexOf(c.source_region), Number(c.mean_ms.toFixed(1))];
    });
    draw("rtt-heatmap", {
      tooltip: {
        trigger: "item",
        formatter: function (p) {
          const cell = data.rtt.find(function (c) {
            return c.target_region === codes[p.value[0]] && c.source_region === codes[p.value[1]];
          });
          if (!cell) return "";
          return cell.source_region + " → " + cell.target_region + "<br>mean " + number(cell.mean_ms, 1) +
            " ms<br>min " + number(cell.min_ms, 1) + ", max " + number(cell.max_ms, 1) + ", sd " + number(cell.std_ms, 2);
        },
      },
      grid: { left: 8, right: 16, top: 8, bottom: 64, containLabel: true },
      xAxis: { type: "category", data: codes, name: "to", axisLabel: { rotate: 45, interval: 0 } },
      yAxis: { type: "category", data: codes, name: "from", inverse: true, axisLabel: { interval: 0 } },
      visualMap: {
        min: Math.min.apply(null, values.concat([0])),
        max: Math.max.apply(null, values.concat([1])),
        calculable: true,
        orient: "horizontal",
        left: "center",
        bottom: 0,
        itemHeight: 120,
        inRange: { color: ["#1a9850", "#fee08b", "#d73027"] },
      },
      series: [{ type: "heatmap", data: cells, label: { show: codes.length <= 8, fontSize: 10 } }],
    });
    fillTable(
      "rtt-table",
      [
        { label: "From", value: function (c) { return c.source_region; } },
        { label: "To", value: function (c) { return c.target_region; } },
        { label: "Mean", numeric: true, value: function (c) { return number(c.mean_ms, 2); } },
        { label: "Min", numeric: true, value: function (c) { return number(c.min_ms, 2); } },
        { label: "Max", numeric: true, value: function (c) { return number(c.max_ms, 2); } },
        { label: "SD", numeric: true, value: function (c) { return number(c.std_ms, 2); } },
        { label: "Days", numeric: true, value: function (c) { return number(c.days, 0); } },
      ],
      data.rtt
    );
    fillTable(
      "region-table",
      [
        { label: "Region", value: function (r) { return r.region; } },
        { label: "City", value: function (r) { return r.city; } },
        { label: "Country", value: function (r) { return r.country; } },
        { label: "Latitude", numeric: true, value: function (r) { return number(r.latitude, 2); } },
        { label: "Longitude", numeric: true, value: function (r) { return number(r.longitude, 2); } },
        { label: "m5.large USD/h", numeric: true, value: function (r) { return number(r.usd_per_hour, 3); } },
        { label: "Internet USD/GB", numeric: true, value: function (r) { return number(r.internet_usd_per_gb, 3); } },
        { label: "Traffic share", numeric: true, value: function (r) { return percent(r.traffic_share); } },
      ],
      data.regions
    );
    draw(
      "traffic-share",
      barOption(
        codes,
        [{ name: "share", data: data.regions.map(function (r) { return Number((100 * r.traffic_share).toFixed(2)); }), color: colors.plan }],
        "% of requests",
        false
      )
    );
    await drawMap(data.regions);
  }

  // Shifts longitudes of each ring by 360 degrees where the ring crosses the antimeridian,
  // so that a polygon such as Russia or Fiji is drawn whole instead of across the map.
  function unwrapGeometry(geometry) {
    if (!geometry) return;
    const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
    polygons.forEach(function (polygon) {
      polygon.forEach(function (ring) {
        for (let i = 1; i < ring.length; i++) {
          const step = ring[i][0] - ring[i - 1][0];
          if (step > 180) ring[i][0] -= 360;
          else if (step < -180) ring[i][0] += 360;
        }
      });
    });
  }

  async function drawMap(regionRows) {
    const response = await fetch("/assets/vendor/countries-110m.json");
    if (!response.ok) throw new Error("cannot load the map outline: " + response.status);
    const topology = await response.json();
    const world = topojson.feature(topology, topology.objects.countries);
    // No region is in Antarctica, and its ring runs along the map's edge.
    world.features = world.features.filter(function (f) { return f.properties.name !== "Antarctica"; });
    world.features.forEach(function (f) { unwrapGeometry(f.geometry); });
    echarts.registerMap("world", world);
    const prices = regionRows.map(function (r) { return r.usd_per_hour; }).filter(isNumber);
    draw("region-map", {
      tooltip: {
        trigger: "item",
        formatter: function (p) {
          const r = p.data && p.data.region;
          if (!r) return "";
          return r.region + " (" + r.city + ", " + r.country + ")<br>m5.large " +
            (isNumber(r.usd_per_hour) ? number(r.usd_per_hour, 3) + " USD/h" : "no price") +
            "<br>traffic share " + percent(r.traffic_share);
        },
      },
      geo: {
        map: "world",
        roam: true,
        silent: true,
        itemStyle: { areaColor: "#e4e8ec", borderColor: "#b4bcc4" },
      },
      visualMap: {
        type: "continuous",
        dimension: 2,
        min: prices.length ? Math.min.apply(null, prices) : 0,
        max: prices.length ? Math.max.apply(null, prices) : 1,
        text: ["USD/h", ""],
        calculable: false,
        orient: "horizontal",
        left: "center",
        bottom: 0,
        itemHeight: 100,
        inRange: { color: ["#2c7bb6", "#fdae61", "#d7191c"] },
        outOfRange: { color: colors.neutral },
        seriesIndex: 0,
      },
      series: [
        {
          type: "scatter",
          coordinateSystem: "geo",
          symbolSize: 12,
          label: { show: true, position: "right", formatter: "{b}", fontSize: 10 },
          data: regionRows.map(function (r) {
            return { name: r.region, value: [r.longitude, r.latitude, isNumber(r.usd_per_hour) ? r.usd_per_hour : -1], region: r };
          }),
        },
      ],
    });
  }

  // ---- Plan ----

  async function plan() {
    const state = { q: "", sort: "service_id", order: "asc", request: 0 };
    const columns = [
      { key: "service_name", label: "Service", value: function (s) { return link("/plan/" + s.service_id, s.service_name); } },
      { key: "template", label: "Template", value: function (s) { return s.template; } },
      { key: "latency_critical", label: "Critical", value: function (s) { return s.latency_critical ? "yes" : "no"; } },
      { key: "regions", label: "Regions", value: function (s) { return s.regions.join(", "); } },
      { key: "instances", label: "Instances", numeric: true, value: function (s) { return number(s.instances, 0); } },
      { key: "predicted_latency_ms", label: "Latency ms", numeric: true, value: function (s) { return number(s.predicted_latency_ms, 2); } },
      { key: "monthly_cost_usd", label: "USD/month", numeric: true, value: function (s) { return number(s.monthly_cost_usd, 0); } },
      { key: "control_instances", label: "Control instances", numeric: true, value: function (s) { return number(s.control_instances, 0); } },
      { key: "control_latency_ms", label: "Control latency ms", numeric: true, value: function (s) { return number(s.control_latency_ms, 2); } },
      { key: "control_cost_usd", label: "Control USD/month", numeric: true, value: function (s) { return number(s.control_cost_usd, 0); } },
    ];
    const url = function () {
      const query = new URLSearchParams({ sort: state.sort, order: state.order });
      if (state.q) query.set("q", state.q);
      return "/api/plan?" + query.toString();
    };
    const render = function (data) {
      fillTable("plan-table", columns, data.services);
      byId("plan-count").textContent =
        data.matched === data.total ? data.total + " services" : data.matched + " of " + data.total + " services match";
      document.querySelectorAll("#plan-table th").forEach(function (cell) {
        if (cell.dataset.key === state.sort) cell.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
        cell.addEventListener("click", function () {
          if (state.sort === cell.dataset.key) state.order = state.order === "asc" ? "desc" : "asc";
          else {
            state.sort = cell.dataset.key;
            state.order = "asc";
          }
          refresh();
        });
      });
    };
    const refresh = async function () {
      const request = ++state.request;
      document.body.dataset.ready = "false";
      const data = await api(url());
      // A slower, older answer must not overwrite a newer one.
      if (request !== state.request) return;
      render(data);
      document.body.dataset.ready = "true";
    };

    const data = await api(url());
    render(data);
    fillTable(
      "plan-totals",
      [
        { label: "Plan", value: function (p) { return p.kind; } },
        { label: "Objective", numeric: true, value: function (p) { return number(p.objective, 0); } },
        { label: "USD/month", numeric: true, value: function (p) { return number(p.monthly_cost_usd, 0); } },
        { label: "Latency ms", numeric: true, value: function (p) { return number(p.weighted_latency_ms, 2); } },
        { label: "World USD/month", numeric: true, value: function (p) { return number(p.world && p.world.monthly_cost_usd, 0); } },
        { label: "World latency ms", numeric: true, value: function (p) { return number(p.world && p.world.weighted_latency_ms, 2); } },
        { label: "World critical ms", numeric: true, value: function (p) { return number(p.world && p.world.critical_latency_ms, 2); } },
        { label: "World errors", numeric: true, value: function (p) { return percent(p.world && p.world.error_rate, 3); } },
      ],
      data.run_plans
    );
    const kinds = data.run_plans.map(function (p) { return p.kind; });
    draw("plan-chart", {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0 },
      grid: { left: 8, right: 8, top: 40, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: kinds },
      yAxis: [
        { type: "value", name: "USD/month" },
        { type: "value", name: "ms", splitLine: { show: false } },
      ],
      series: [
        { type: "bar", name: "cost USD/month", data: data.run_plans.map(function (p) { return Number(p.monthly_cost_usd.toFixed(0)); }), itemStyle: { color: colors.plan } },
        { type: "bar", name: "latency ms", yAxisIndex: 1, data: data.run_plans.map(function (p) { return Number(p.weighted_latency_ms.toFixed(2)); }), itemStyle: { color: colors.treatment } },
      ],
    });
    let timer = null;
    byId("plan-search").addEventListener("input", function (event) {
      clearTimeout(timer);
      timer = setTimeout(function () {
        state.q = event.target.value;
        refresh().catch(showError);
      }, 150);
    });
  }

  // ---- One service ----

  async function service() {
    const id = document.body.dataset.serviceId;
    const data = await api("/api/plan/" + encodeURIComponent(id));
    fillTiles("service-attributes", [
      { label: "Template", value: data.template },
      { label: "Memory", value: number(data.memory_mb, 0) + " MB" },
      { label: "Cores", value: number(data.cores, 1) },
      { label: "Traffic", value: number(data.mean_requests_per_second, 1), detail: "mean requests/s" },
      { label: "Latency-critical", value: data.latency_critical ? "yes" : "no" },
    ]);
    const regionsInOrder = data.routing.map(function (r) { return r.origin_region; });
    const hostOf = function (hosts, region) {
      return hosts.find(function (h) { return h.region === region; }) || {};
    };
    const hosted = regionsInOrder.filter(function (region) {
      return data.plan_hosts.concat(data.control_hosts).some(function (h) { return h.region === region; });
    });
    fillTable(
      "service-hosts",
      [
        { label: "Region", value: function (r) { return r; } },
        { label: "Instances", numeric: true, value: function (r) { return number(hostOf(data.plan_hosts, r).instances, 0); } },
        { label: "Share", numeric: true, value: function (r) { return percent(hostOf(data.plan_hosts, r).routed_share); } },
        { label: "Latency ms", numeric: true, value: function (r) { return number(hostOf(data.plan_hosts, r).predicted_latency_ms, 2); } },
        { label: "USD/month", numeric: true, value: function (r) { return number(hostOf(data.plan_hosts, r).monthly_cost_usd, 0); } },
        { label: "Control instances", numeric: true, value: function (r) { return number(hostOf(data.control_hosts, r).instances, 0); } },
        { label: "Control share", numeric: true, value: function (r) { return percent(hostOf(data.control_hosts, r).routed_share); } },
        { label: "Control latency ms", numeric: true, value: function (r) { return number(hostOf(data.control_hosts, r).predicted_latency_ms, 2); } },
        { label: "Control USD/month", numeric: true, value: function (r) { return number(hostOf(data.control_hosts, r).monthly_cost_usd, 0); } },
      ],
      hosted
    );
    const shareSeries = function (hosts) {
      return regionsInOrder.map(function (region) {
        const share = hostOf(hosts, region).routed_share;
        return isNumber(share) ? Number((100 * share).toFixed(2)) : 0;
      });
    };
    draw(
      "service-shares",
      barOption(
        regionsInOrder,
        [
          { name: "plan", data: shareSeries(data.plan_hosts), color: colors.plan },
          { name: "control", data: shareSeries(data.control_hosts), color: colors.control },
        ],
        "% of demand",
        false
      )
    );
    fillTable(
      "service-routing",
      [
        { label: "Origin", value: function (r) { return r.origin_region; } },
        { label: "Demand share", numeric: true, value: function (r) { return percent(r.demand_share); } },
        { label: "Plan: served from", value: function (r) { return r.plan_region; } },
        { label: "RTT ms", numeric: true, value: function (r) { return number(r.plan_rtt_ms, 1); } },
        { label: "Control: served from", value: function (r) { return r.control_region; } },
        { label: "Control RTT ms", numeric: true, value: function (r) { return number(r.control_rtt_ms, 1); } },
      ],
      data.routing
    );
    const neighbours = data.dependencies
      .map(function (d) { return Object.assign({ direction: "calls" }, d); })
      .concat(data.dependents.map(function (d) { return Object.assign({ direction: "is called by" }, d); }));
    if (neighbours.length === 0) {
      replaceWithNote("service-dependencies", "This service calls no other service, and none calls it.");
    } else {
      fillTable(
        "service-dependencies",
        [
          { label: "Relation", value: function (d) { return d.direction; } },
          { label: "Service", value: function (d) { return link("/plan/" + d.service_id, d.service_name); } },
          { label: "Its regions under the plan", value: function (d) { return d.plan_regions.join(", "); } },
        ],
        neighbours
      );
    }
  }

  // ---- Models ----

  async function models() {
    const data = await api("/api/models");
    const latency = data.latency;
    if (latency) {
      fillTable(
        "model-scores",
        [
          { label: "Predictor", value: function (s) { return s.name; } },
          { label: "RMSE ms", numeric: true, value: function (s) { return number(s.rmse_ms, 2); } },
          { label: "MAE ms", numeric: true, value: function (s) { return number(s.mae_ms, 2); } },
          { label: "R²", numeric: true, value: function (s) { return number(s.r2, 3); } },
        ],
        latency.scores
      );
      const scoreColors = [colors.plan, colors.neutral, colors.treatment];
      const rmse = barOption(latency.scores.map(function (s) { return s.name; }), [{ name: "RMSE ms", data: [] }], "ms", false);
      rmse.series[0].data = latency.scores.map(function (s, i) {
        return { value: isNumber(s.rmse_ms) ? Number(s.rmse_ms.toFixed(2)) : null, itemStyle: { color: scoreColors[i % 3] } };
      });
      draw("model-rmse", rmse);
      const features = latency.feature_importance;
      const importance = barOption(
        features.map(function (f) { return f.feature; }),
        [{ name: "share of gain %", data: features.map(function (f) { return Number((100 * f.share).toFixed(2)); }), color: colors.plan }],
        "% of gain",
        true
      );
      byId("feature-importance").style.height = Math.max(340, 22 * features.length + 60) + "px";
      draw("feature-importance", importance);
      const points = latency.predictions.points;
      const top = points.reduce(function (m, p) { return Math.max(m, p[0], p[1]); }, 1);
      draw("predictions", {
        tooltip: {
          trigger: "item",
          formatter: function (p) {
            return Array.isArray(p.value) ? "observed " + number(p.value[0], 1) + " ms<br>predicted " + number(p.value[1], 1) + " ms" : "";
          },
        },
        grid: { left: 8, right: 24, top: 28, bottom: 32, containLabel: true },
        xAxis: { type: "value", name: "observed ms", min: 0, nameLocation: "middle", nameGap: 28 },
        yAxis: { type: "value", name: "predicted ms", min: 0, nameTextStyle: { align: "left" } },
        series: [
          { type: "scatter", data: points, symbolSize: 4, itemStyle: { color: colors.plan, opacity: 0.6 } },
          { type: "line", data: [[0, 0], [top, top]], showSymbol: false, silent: true, lineStyle: { type: "dashed", color: colors.control }, tooltip: { show: false } },
        ],
      });
      const predictionNote = byId("predictions").previousElementSibling;
      if (predictionNote && latency.predictions.points.length < latency.predictions.rows) {
        predictionNote.textContent += " " + latency.predictions.points.length + " of " + latency.predictions.rows + " rows, evenly spaced.";
      }
    } else {
      ["model-scores", "model-rmse", "feature-importance", "predictions"].forEach(function (id) {
        replaceWithNote(id, "No latency model is stored yet: run `placewise train`.");
      });
    }
    const strategy = data.strategy;
    if (strategy) {
      const cells = [];
      strategy.confusion.forEach(function (row, actual) {
        row.forEach(function (count, predicted) { cells.push([predicted, actual, count]); });
      });
      const largest = cells.reduce(function (m, c) { return Math.max(m, c[2]); }, 1);
      draw("confusion", {
        tooltip: {
          trigger: "item",
          formatter: function (p) {
            return "actual " + strategy.labels[p.value[1]] + "<br>predicted " + strategy.labels[p.value[0]] + "<br>" + p.value[2] + " services";
          },
        },
        grid: { left: 8, right: 16, top: 28, bottom: 56, containLabel: true },
        xAxis: { type: "category", data: strategy.labels, name: "predicted" },
        yAxis: { type: "category", data: strategy.labels, name: "actual", inverse: true },
        visualMap: { min: 0, max: largest, orient: "horizontal", left: "center", bottom: 0, itemHeight: 100, inRange: { color: ["#f0f4f8", "#1d5fa8"] } },
        series: [{ type: "heatmap", data: cells, label: { show: true, fontSize: 14 } }],
      });
      const metrics = strategy.metrics || {};
      const rows = [
        ["Accuracy", metrics.accuracy, 3],
        ["Majority-class accuracy", metrics.majority_accuracy, 3],
        ["Precision (several regions)", metrics.precision, 3],
        ["Recall (several regions)", metrics.recall, 3],
        ["Replica count accuracy", metrics.replica_accuracy, 3],
        ["Replica count, majority", metrics.replica_majority_accuracy, 3],
        ["Services labelled one region", metrics.single_region, 0],
        ["Services labelled several regions", metrics.multi_region, 0],
        ["Cross-validation folds", metrics.folds, 0],
      ];
      fillTable(
        "classifier-metrics",
        [
          { label: "Metric", value: function (r) { return r[0]; } },
          { label: "Value", numeric: true, value: function (r) { return number(r[1], r[2]); } },
        ],
        rows
      );
    } else {
      replaceWithNote("confusion", "No strategy classifier is stored yet: run `placewise optimize`.");
      replaceWithNote("classifier-metrics", "No strategy classifier is stored yet: run `placewise optimize`.");
    }
  }

  const pages = {
    overview: overview,
    "ab-test": abTest,
    regions: regions,
    plan: plan,
    service: service,
    models: models,
  };

  const run = pages[document.body.dataset.page];
  if (run) {
    run().then(
      function () {
        if (document.body.dataset.ready !== "error") document.body.dataset.ready = "true";
      },
      showError
    );
  }
})();
