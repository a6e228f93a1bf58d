// The second chart: rng answers per second, one line per instance, polled from /rng-rates
// (which asks Prometheus). When Prometheus is not there, the chart area says why; the
// hash-rate chart above does not depend on any of this.
(function () {
  "use strict";

  var MAX_SAMPLES = 150;        // five minutes at one sample every 2 s
  var POLL_MS = 2000;
  var FETCH_TIMEOUT_MS = 4000;  // /rng-rates itself gives up on Prometheus within 3 s
  var COLORS = ["#1d63ed", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#f08c00",
    "#5c940d", "#862e9c", "#364fc7"];

  var el = function (id) { return document.getElementById(id); };
  var card = el("rng-card");
  var box = el("rng-chart");
  var message = el("rng-message");

  var times = [];     // Unix seconds of each sample
  var history = {};   // label -> rates aligned with times (null: no value at that time)
  var labels = [];    // the labels drawn, in the order of the chart's series
  var plot = null;
  var state = { available: null, reason: "No answer from /rng-rates yet.", labels: labels };

  var axisStyle = {
    stroke: "#5b6b86",
    grid: { stroke: "rgba(20, 33, 61, 0.08)", width: 1 },
    ticks: { stroke: "rgba(20, 33, 61, 0.2)", width: 1 },
    font: "12px system-ui, sans-serif",
    labelFont: "600 13px system-ui, sans-serif",
  };

  function chartSize() {
    return { width: Math.max(box.clientWidth, 300), height: 260 };
  }

  function chartData() {
    return [times].concat(labels.map(function (label) { return history[label]; }));
  }

  // uPlot's series are fixed when it is made: a new set of labels makes a new chart.
  function build() {
    if (plot) { plot.destroy(); }
    var series = [{}].concat(labels.map(function (label, i) {
      return {
        label: label,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        points: { show: false },
        spanGaps: false,
        value: function (u, v) { return v == null ? "–" : v.toFixed(1) + "/s"; },
      };
    }));
    plot = new uPlot({
      width: chartSize().width,
      height: chartSize().height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: function (u, min, max) {
            if (min == null || max == null) { var t = Date.now() / 1000; return [t - 60, t]; }
            return [Math.min(min, max - 60), max];
          },
        },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } },
      },
      series: series,
      axes: [
        Object.assign({ label: "time", labelSize: 28 }, axisStyle),
        Object.assign({ label: "answers / second", labelSize: 30, size: 60 }, axisStyle),
      ],
    }, chartData(), box);
    state.plot = plot;
  }

  function show(available, text) {
    var changed = state.available !== available;
    state.available = available;
    state.reason = available ? null : text;
    card.classList.toggle("is-unavailable", !available);
    message.hidden = !text;
    message.textContent = text || "";
    // A chart made or shown while its box was hidden has the wrong width.
    if (changed && available && plot) { plot.setSize(chartSize()); }
  }

  function addSample(answer) {
    var seen = {};
    answer.series.forEach(function (one) { seen[one.label] = one.rate; });
    var before = labels.join("\n");
    Object.keys(seen).sort().forEach(function (label) {
      if (!history[label]) {
        history[label] = times.map(function () { return null; });
        labels.push(label);
      }
    });
    times.push(answer.now);
    labels.forEach(function (label) {
      history[label].push(label in seen ? seen[label] : null);
    });
    while (times.length > MAX_SAMPLES) {
      times.shift();
      labels.forEach(function (label) { history[label].shift(); });
    }
    // Forget the instances that have not answered for the whole window.
    for (var i = labels.length - 1; i >= 0; i--) {
      if (history[labels[i]].every(function (v) { return v == null; })) {
        delete history[labels[i]];
        labels.splice(i, 1);
      }
    }
    if (!labels.length) { times.length = 0; }  // nothing to draw: no empty history either
    labels.sort();
    show(true, answer.series.length ? "" :
      "Prometheus has no rng answers to show yet (is rng scraped, and busy?).");
    if (!plot || labels.join("\n") !== before) { build(); } else { plot.setData(chartData()); }
    // The legend shows the latest rates, unless the pointer is on the chart.
    if (times.length && !(plot.cursor.left >= 0)) { plot.setLegend({ idx: times.length - 1 }); }
  }

  function isAnswer(data) {
    return data && typeof data.available === "boolean" && Array.isArray(data.series) &&
      typeof data.now === "number";
  }

  function poll() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    fetch("rng-rates", { cache: "no-store", signal: controller.signal })
      .then(function (response) {
        if (!response.ok) { throw new Error("/rng-rates answered " + response.status + "."); }
        return response.json();
      })
      .then(function (data) {
        if (!isAnswer(data)) { throw new Error("/rng-rates answered something unexpected."); }
        if (data.available) { addSample(data); } else { show(false, data.reason); }
      })
      .catch(function (error) {
        show(false, error.name === "AbortError" ? "/rng-rates did not answer in time." :
          (error.message.indexOf("/rng-rates") === 0 ? error.message :
            "/rng-rates is unreachable."));
      })
      .finally(function () {
        clearTimeout(timer);
        setTimeout(poll, POLL_MS);
      });
  }

  window.addEventListener("resize", function () { if (plot) { plot.setSize(chartSize()); } });

  // For tests and the curious: the chart, its labels and whether Prometheus answered.
  window.dockercoins = window.dockercoins || {};
  window.dockercoins.rngRates = state;

  poll();
})();
