// The treatment timeline: reads the patient's record with the SMART client (the same queries the
// patient-view service prefetches, from config.json), asks the service for the timeline document
// (POST timeline: course, labs, thresholds and decisions from the engine that makes the cards) and
// draws it with Vega-Lite. Nothing about the course is worked out here: this file only draws.
(async function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const DAY = 24 * 3600 * 1000;

  function fail(message) {
    $("status").className = "error";
    $("status").textContent = message;
    $("status").hidden = false;
  }

  function text(tag, content, cls) {
    const el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  }

  const fmt = (x, digits) => (x === null || x === undefined ? "?" : String(+x.toFixed(digits)));
  const amount = (n) => (n.mg === null || n.mg === undefined
    ? "amount not computed (BSA or response not known)"
    : fmt(n.mgPerM2, 3) + " mg/m2 = " + fmt(n.mg, 2) + " mg" + (n.bsaM2 ? " (BSA " + fmt(n.bsaM2, 2) + " m2)" : ""));
  const decisionsText = (n) => (n.decisions && n.decisions.length > 1 ? "Decisions: " : "Decision: ") +
    (n.decisions || [{ code: n.decision, rules: n.rules }])
      .map((d) => d.code + " (" + d.rules.join(", ") + ")").join("; ");
  const LEVELS = { 0: "level 0 (label dose)", 1: "level 1 (-25 %)", 2: "level 2 (2 doses per cycle)" };

  // Percent-encode every search parameter value ("http://loinc.org|1975-2" -> "http%3A%2F%2F...")
  // so that no proxy between the app and the FHIR server rewrites it (a literal "//" in a query
  // string is collapsed by some, silently matching nothing).
  function encodeQuery(relative) {
    const [path, query] = relative.split("?");
    if (!query) return path.split("/").map(encodeURIComponent).join("/");
    const params = new URLSearchParams(query);
    return path + "?" + Array.from(params, ([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");
  }

  async function readRecord(client, config) {
    const pid = client.patient.id;
    const prefetch = {};
    const unread = [];
    await Promise.all(Object.entries(config.queries).map(async ([key, template]) => {
      const url = encodeQuery(template.split(config.patientToken).join(pid));
      try {
        if (url.startsWith("Patient/")) {
          prefetch[key] = await client.request(url);
        } else {
          const resources = await client.request(url, { pageLimit: 0, flat: true });
          prefetch[key] = { resourceType: "Bundle", type: "searchset",
                            entry: (resources || []).map((r) => ({ resource: r })) };
        }
      } catch (err) {
        unread.push(key); // absent key: the service reports it as data not read
      }
    }));
    return { pid, prefetch, unread };
  }

  async function fetchTimeline(pid, prefetch) {
    const response = await fetch("timeline", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ patientId: pid, prefetch: prefetch }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((body && body.message) || ("the service answered HTTP " + response.status));
    }
    return body;
  }

  // ------------------------------------------------------------------ text panels

  function showDecision(tl) {
    const box = $("todays-decision");
    const d = tl.todaysDecision;
    box.replaceChildren();
    if (!d) {
      box.className = "decision";
      box.append(text("div", "No decision today", "code"),
                 text("div", "The engine returned no decision for this patient today" +
                      (tl.doses.length ? "." : " (no inotuzumab ozogamicin recorded as given).")));
    } else {
      box.className = "decision " + d.indicator;
      box.append(text("div", "Today: " + d.display, "code"), text("div", d.summary));
      const rules = text("div", "");
      rules.append(text("span", "Rules " + d.rules.join(", "), "rules"),
                   document.createTextNode("  " + d.citations.join("; ")));
      box.append(rules);
      if (d.holdUntil || d.recoveryCriteria) {
        box.append(text("div", "Re-dose" + (d.holdUntil ? " on or after " + d.holdUntil : "") +
                        (d.recoveryCriteria ? " when " + d.recoveryCriteria : "")));
      }
    }
    const n = tl.nextDose;
    $("next-dose").textContent = n
      ? "Next dose: Cycle " + n.cycle + " Day " + n.day + (n.date ? ", due " + n.date : "") + ": " +
        amount(n) + (n.reductionLevel === null || n.reductionLevel === undefined ? ""
                     : ", " + (LEVELS[n.reductionLevel] || "reduction level " + n.reductionLevel)) +
        ". " + decisionsText(n) + "."
      : "Next dose: the engine computed no dose for this patient today.";
    $("today").hidden = false;
  }

  function showDetails(tl) {
    const body = $("dose-table").querySelector("tbody");
    body.replaceChildren();
    for (const d of tl.doses) {
      const tr = document.createElement("tr");
      const level = d.reductionLevel === null ? "not classifiable" : LEVELS[d.reductionLevel];
      for (const [v, num] of [[d.date], ["Cycle " + d.cycle], ["Day " + d.day],
                              [d.mg === null ? "unknown" : fmt(d.mg, 2), 1],
                              [d.mgPerM2 === null ? "unknown" : fmt(d.mgPerM2, 3), 1], [level]]) {
        tr.append(text("td", v, num ? "num" : ""));
      }
      body.append(tr);
    }
    if (!tl.doses.length) {
      const tr = document.createElement("tr");
      const td = text("td", "No inotuzumab ozogamicin administration recorded.");
      td.colSpan = 6;
      tr.append(td);
      body.append(tr);
    }
    $("decisions").replaceChildren(...(tl.decisions.length ? tl.decisions.map((d) =>
      text("li", d.display + " (" + d.rules.join(", ") + "): " + d.summary))
      : [text("li", "None.")]));
    $("notes").replaceChildren(...(tl.course.notes.length
      ? tl.course.notes.map((n) => text("li", n))
      : [text("li", tl.doses.length ? "Doses placed in cycles by date (C-2); nothing else to note."
                                    : "No inotuzumab ozogamicin administration recorded.")]));
    const problems = tl.problems.map((p) => p.reason + (p.reference ? " (" + p.reference + ")" : ""));
    $("problems").replaceChildren(...problems.map((p) => text("li", p)));
    $("problems-block").hidden = problems.length === 0;
    $("thresholds-note").textContent = "Thresholds: " +
      tl.thresholds.map((t) => t.label + " (" + t.source + ")").join("; ") +
      ". Response in force: " + tl.course.response + ". Label: " + tl.label + ".";
    $("details").hidden = false;
  }

  // ------------------------------------------------------------------ the chart

  function domain(tl) {
    const times = [Date.parse(tl.today)];
    for (const d of tl.doses) times.push(Date.parse(d.date));
    for (const c of tl.course.cycles) times.push(Date.parse(c.start), Date.parse(c.end));
    for (const s of tl.spans) times.push(Date.parse(s.start), s.end ? Date.parse(s.end) : NaN);
    for (const l of tl.labs) times.push(Date.parse(l.date));
    if (tl.nextDose && tl.nextDose.date) times.push(Date.parse(tl.nextDose.date));
    const ok = times.filter((t) => !Number.isNaN(t));
    return [Math.min(...ok) - 3 * DAY, Math.max(...ok) + 6 * DAY];
  }

  function spec(tl) {
    const [lo, hi] = domain(tl);
    const width = Math.max(600, Math.min(1000, document.querySelector("main").clientWidth - 190));
    const x = { field: "date", type: "temporal", title: null,
                scale: { type: "utc", domain: [lo, hi] }, axis: { format: "%d %b", labelFlush: true } };
    const xStart = Object.assign({}, x, { field: "start" });
    const today = { data: { values: [{ date: tl.today, label: "today" }] },
                    mark: { type: "rule", strokeDash: [4, 3], color: "#333" }, encoding: { x: x } };
    const todayLabel = { data: { values: [{ date: tl.today, label: "today" }] },
                         mark: { type: "text", y: 10, dx: 4, align: "left", fontStyle: "italic", color: "#333" },
                         encoding: { x: x, text: { field: "label" } } };
    const doses = tl.doses.map((d) => Object.assign({}, d, {
      level: d.reductionLevel === null ? "not classifiable" : LEVELS[d.reductionLevel],
      label: "C" + d.cycle + " D" + d.day + "\n" + (d.mgPerM2 === null ? "? mg/m2" : fmt(d.mgPerM2, 3) + " mg/m2") +
             "\n" + (d.mg === null ? "? mg" : fmt(d.mg, 2) + " mg"),
    }));
    const next = tl.nextDose ? [Object.assign({}, tl.nextDose, {
      date: tl.nextDose.date || tl.today,
      label: "Next dose: C" + tl.nextDose.cycle + " D" + tl.nextDose.day + "\n" +
             (tl.nextDose.mg === null || tl.nextDose.mg === undefined ? "amount not computed"
              : fmt(tl.nextDose.mgPerM2, 3) + " mg/m2 = " + fmt(tl.nextDose.mg, 2) + " mg") +
             "\n" + (tl.nextDose.decisions || [tl.nextDose]).map((d) => d.code || d.decision).join(", "),
    })] : [];
    const cycles = tl.course.cycles.map((c) => Object.assign({}, c, { label: "Cycle " + c.number,
                                                                     band: c.number % 2 }));
    const KIND = { interruption: "Interruption / delay", omitted: "Omitted dose", hold: "Hold" };
    const spans = tl.spans.map((s) => Object.assign({}, s, {
      end: s.end || new Date(hi).toISOString().slice(0, 10), kind: KIND[s.kind] || s.kind }));
    // The next-dose label goes left of its marker near the right edge, so that it stays inside.
    const nextOnRight = next.length > 0 && (Date.parse(next[0].date) - lo) / (hi - lo) > 0.7;
    // Doses on one lane (a dose whose mg/m2 the engine could not work out is still drawn).
    const LANE = 48;
    const dosePanel = {
      width: width, height: 112,
      title: { text: "Doses given (colour = reduction level) and the next dose", anchor: "start", fontSize: 13 },
      layer: [
        { data: { values: cycles }, mark: { type: "rect", opacity: 0.6 },
          encoding: { x: xStart, x2: { field: "end" },
                      fill: { field: "band", type: "nominal", legend: null,
                              scale: { domain: [0, 1], range: ["#dfe7ef", "#eef3f7"] } } } },
        { data: { values: cycles }, mark: { type: "text", align: "left", dx: 4, y: 10, fontWeight: "bold", color: "#3a4a5a" },
          encoding: { x: xStart, text: { field: "label" } } },
        today,
        todayLabel,
        { data: { values: doses }, mark: { type: "point", filled: true, size: 130, y: LANE },
          encoding: { x: x,
                      color: { field: "level", type: "nominal", title: "Reduction level",
                               scale: { domain: [LEVELS[0], LEVELS[1], LEVELS[2], "not classifiable"],
                                        range: ["#1f6fb2", "#c77700", "#8e44ad", "#7f8c8d"] },
                               legend: { orient: "bottom", direction: "horizontal" } },
                      tooltip: [{ field: "date", type: "temporal", format: "%Y-%m-%d" }, { field: "cycle" },
                                { field: "day" }, { field: "mg", title: "mg" }, { field: "mgPerM2", title: "mg/m2" },
                                { field: "level" }, { field: "reference" }] } },
        { data: { values: doses }, mark: { type: "text", y: LANE + 12, fontSize: 10, lineBreak: "\n", baseline: "top" },
          encoding: { x: x, text: { field: "label" } } },
        { data: { values: next }, mark: { type: "point", shape: "diamond", size: 260, strokeWidth: 2.5, filled: false,
                                           color: "#b42318", y: LANE } ,
          encoding: { x: x } },
        { data: { values: next }, mark: { type: "text", y: LANE + 14, fontSize: 11, fontWeight: "bold", color: "#b42318",
                                           align: nextOnRight ? "right" : "left", dx: nextOnRight ? -10 : 10,
                                           baseline: "top", lineBreak: "\n" },
          encoding: { x: x, text: { field: "label" } } },
      ],
    };
    const spanPanel = {
      width: width, height: 54,
      title: { text: "Holds, interruptions and omitted doses", anchor: "start", fontSize: 13 },
      layer: [
        { data: { values: spans.length ? spans : [{ start: tl.today, end: tl.today, kind: "none", label: "" }] },
          mark: { type: "rect", height: 14, cornerRadius: 2 },
          encoding: { x: xStart, x2: { field: "end" },
                      y: { field: "kind", type: "nominal", title: null,
                           scale: { domain: ["Hold", "Interruption / delay", "Omitted dose"] },
                           axis: { labelFontSize: 11 } },
                      color: { field: "kind", type: "nominal", legend: null,
                               scale: { domain: ["Hold", "Interruption / delay", "Omitted dose", "none"],
                                        range: ["#b42318", "#c77700", "#7f8c8d", "#ffffff"] } },
                      tooltip: [{ field: "label" }, { field: "start" }, { field: "end" }] } },
        { data: { values: spans }, mark: { type: "text", align: "left", dx: 4, fontSize: 10 },
          encoding: { x: xStart, y: { field: "kind", type: "nominal" }, text: { field: "label" } } },
        today,
      ],
    };

    function labPanel(panel, title, yTitle, analytes, colors, extra) {
      const rows = tl.labs.filter((l) => l.panel === panel && (panel !== "liver" || l.ratio !== null));
      const field = panel === "liver" ? "ratio" : "value";
      const thresholds = tl.thresholds.filter((t) => t.panel === panel);
      const top = Math.max(...rows.map((r) => r[field]), ...thresholds.map((t) => t.value * 1.6));
      const y = { field: field, type: "quantitative", title: yTitle, scale: { domain: [0, top], nice: true } };
      return {
        width: width, height: 110,
        title: { text: rows.length ? title : title + ": no results read", anchor: "start", fontSize: 13,
                 color: rows.length ? "#000" : "#9b1c1c" },
        layer: [
          today,
          { data: { values: thresholds }, mark: { type: "rule", strokeDash: [6, 4], strokeWidth: 1.5, color: "#b42318" },
            encoding: { y: { field: "value", type: "quantitative", scale: { domain: [0, top], nice: true } } } },
          { data: { values: thresholds }, mark: { type: "text", align: "right", baseline: "bottom", dy: -2, x: width - 2,
                                                  color: "#b42318", fontSize: 11, fontWeight: "bold" },
            encoding: { y: { field: "value", type: "quantitative" }, text: { field: "label" } } },
          { data: { values: rows }, mark: { type: "line", point: { filled: true, size: 40 } },
            encoding: { x: x, y: y,
                        color: { field: "name", type: "nominal", title: null,
                                 scale: { domain: analytes, range: colors }, legend: extra },
                        tooltip: [{ field: "name" }, { field: "date", type: "temporal", format: "%Y-%m-%d %H:%M" },
                                  { field: "value" }, { field: "unit" }, { field: "ratio", title: "x ULN" },
                                  { field: "uln", title: "ULN" }, { field: "reference" }] } },
        ],
      };
    }

    return {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      vconcat: [
        dosePanel,
        spanPanel,
        labPanel("anc", "ANC (x10^9/L)", "x10^9/L", ["ANC"], ["#1f6fb2"], null),
        labPanel("platelets", "Platelets (x10^9/L)", "x10^9/L", ["Platelets"], ["#2e8b57"], null),
        labPanel("liver", "Liver tests as multiples of ULN", "x ULN", ["Total bilirubin", "AST", "ALT"],
                 ["#8e44ad", "#c0392b", "#d68910"], { orient: "top-left", direction: "horizontal" }),
      ],
      spacing: 14,
      resolve: { scale: { color: "independent", y: "independent" } },
      config: { view: { stroke: "#d5dde5" }, axis: { labelFontSize: 11, titleFontSize: 11 } },
    };
  }

  // ------------------------------------------------------------------ main

  try {
    const client = await FHIR.oauth2.ready();
    if (!client.patient.id) {
      fail("No patient in the launch context: launch the app from a patient's chart (EHR launch) " +
           "or choose a patient at the authorization server (standalone launch).");
      return;
    }
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    const record = await readRecord(client, config);
    $("context").textContent = "Patient " + record.pid + " · FHIR server " + client.state.serverUrl +
      (record.unread.length ? " · not readable: " + record.unread.join(", ") : "");
    $("status").textContent = "Working out the course…";
    let tl;
    try {
      tl = await fetchTimeline(record.pid, record.prefetch);
    } catch (err) {
      if (record.unread.length) {  // say what the FHIR server refused, not only the consequence
        throw new Error("the FHIR server did not return " + record.unread.join(", ") + " (" +
                        err.message + ")");
      }
      throw err;
    }
    showDecision(tl);
    showDetails(tl);
    await vegaEmbed("#chart", spec(tl), { renderer: "svg", actions: false });
    $("status").hidden = true;
    document.body.dataset.ready = "true";
  } catch (err) {
    fail("The timeline could not be shown: " + (err && err.message ? err.message : String(err)));
    document.body.dataset.ready = "error";
  }
})();
