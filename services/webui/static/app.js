// DockerCoins page: polls /json, charts hashes/second, shows a stale state when data stops.
(function () {
  "use strict";

  var MAX_SAMPLES = 250;        // like the original page
  var POLL_MS = 1000;           // one sample a second
  var FETCH_TIMEOUT_MS = 2500;  // a /json that hangs counts as a failure
  var STALE_AFTER_MS = 3500;    // no good sample for this long: the data is stale

  var times = [];               // Unix seconds of each rate point
  var rates = [];               // hashes/second between two successive samples
  var previous = null;          // last good sample {hashes, now}
  var lastGoodAt = 0;           // Date.now() of the last good sample
  var failure = "No answer from /json yet.";

  var el = function (id) { return document.getElementById(id); };
  var chartBox = el("chart");

  function chartSize() {
    return { width: Math.max(chartBox.clientWidth, 300), height: 300 };
  }

  var axisStyle = {
    stroke: "#5b6b86",
    grid: { stroke: "rgba(20, 33, 61, 0.08)", width: 1 },
    ticks: { stroke: "rgba(20, 33, 61, 0.2)", width: 1 },
    font: "12px system-ui, sans-serif",
    labelFont: "600 13px system-ui, sans-serif",
  };

  var plot = new uPlot({
    width: chartSize().width,
    height: chartSize().height,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: {
        time: true,
        // At least a minute wide, so the first samples sit at the right of a readable axis.
        range: function (u, min, max) {
          if (min == null || max == null) { var t = Date.now() / 1000; return [t - 60, t]; }
          return [Math.min(min, max - 60), max];
        },
      },
      y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } },
    },
    series: [
      {},
      {
        label: "hashes/second",
        stroke: "#1d63ed",
        width: 2.5,
        fill: "rgba(29, 99, 237, 0.14)",
        points: { show: false },
      },
    ],
    axes: [
      Object.assign({ label: "time", labelSize: 28 }, axisStyle),
      Object.assign({ label: "hashes / second", labelSize: 30, size: 60 }, axisStyle),
    ],
  }, [times, rates], chartBox);

  window.addEventListener("resize", function () { plot.setSize(chartSize()); });

  function showStale(stale) {
    el("stale").hidden = !stale;
    document.body.classList.toggle("is-stale", stale);
    el("status").className = "status " + (stale ? "stale" : "live");
    el("status-text").textContent = stale ? "stale / no data" : "live";
    if (stale) { el("stale-reason").textContent = failure; }
  }

  function isSample(data) {
    return data && typeof data.coins === "number" && typeof data.hashes === "number" &&
      typeof data.now === "number";
  }

  function addSample(sample) {
    if (previous && sample.now > previous.now && sample.hashes >= previous.hashes) {
      var rate = (sample.hashes - previous.hashes) / (sample.now - previous.now);
      times.push(sample.now);
      rates.push(rate);
      while (times.length > MAX_SAMPLES) { times.shift(); rates.shift(); }
      plot.setData([times, rates]);
      el("rate-value").textContent = "~" + rate.toFixed(1);
    }
    // A counter that went down (Redis emptied) starts a fresh series of differences.
    previous = { hashes: sample.hashes, now: sample.now };
    el("coins").textContent = String(sample.coins);
    el("hashes").textContent = String(sample.hashes);
    el("updated").textContent = new Date(sample.now * 1000).toLocaleTimeString();
    lastGoodAt = Date.now();
    showStale(false);
  }

  function fail(reason) {
    failure = reason;
    showStale(true);
  }

  function poll() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    fetch("json", { cache: "no-store", signal: controller.signal })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (data) {
          if (!response.ok) {
            var why = data && data.error ? data.error : response.statusText;
            throw new Error("/json answered " + response.status + ": " + why);
          }
          if (!isSample(data)) { throw new Error("/json answered something unexpected"); }
          addSample(data);
        });
      })
      .catch(function (error) {
        fail(error.name === "AbortError" ? "/json did not answer in time." :
          (error.message.indexOf("/json") === 0 ? error.message : "/json is unreachable."));
      })
      .finally(function () {
        clearTimeout(timer);
        setTimeout(poll, POLL_MS);
      });
  }

  // Stale also when answers simply stop coming (a hung request, a stopped server).
  setInterval(function () {
    if (Date.now() - lastGoodAt > STALE_AFTER_MS && el("stale").hidden) {
      if (lastGoodAt) { failure = "No new data from /json for a few seconds."; }
      showStale(true);
    }
  }, 500);

  // For tests and the curious: the chart and its data.
  window.dockercoins = { plot: plot, times: times, rates: rates };

  poll();
})();
