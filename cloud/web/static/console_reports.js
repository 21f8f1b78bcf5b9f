/* The console's report screens: the chart of `data-report-chart` (JSON the page wrote:
   categories, series of kWh, unit, line) as ECharts bars or a line (drawn by `charts.js`),
   and the print button.
   No inline script (the CSP forbids it); ES5. */
(function () {
  "use strict";
  var COLOURS = ["#0b6e4f", "#e08a1e", "#8b5cf6", "#2f80c1"];
  function options(data) {
    var series = [];
    for (var i = 0; i < data.series.length; i += 1) {
      series.push({ name: data.series[i].name, type: data.line ? "line" : "bar",
                    data: data.series[i].data, itemStyle: { color: COLOURS[i % COLOURS.length] },
                    barMaxWidth: 36 });
    }
    return {
      grid: { left: 64, right: 16, top: 36, bottom: 48, containLabel: false },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.categories, axisLabel: { hideOverlap: true } },
      yAxis: { type: "value", name: data.unit },
      series: series
    };
  }
  function start() {
    var button = document.getElementById("print-report");
    if (button) {
      button.addEventListener("click", function () { window.print(); });
    }
  }
  if (window.VoltbookCharts) {
    window.VoltbookCharts.each("data-report-chart", options);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
