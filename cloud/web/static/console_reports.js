/* The console's report screens: the chart of `data-report-chart` (JSON the page wrote:
   categories, series of kWh, unit, line) as ECharts bars or a line, and the print button.
   No inline script (the CSP forbids it); ES5. */
(function () {
  "use strict";
  var COLOURS = ["#0b6e4f", "#e08a1e", "#8b5cf6", "#2f80c1"];
  function draw(element) {
    var data;
    try {
      data = JSON.parse(element.getAttribute("data-report-chart"));
    } catch (e) {
      return;
    }
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    var series = [];
    for (var i = 0; i < data.series.length; i += 1) {
      series.push({ name: data.series[i].name, type: data.line ? "line" : "bar",
                    data: data.series[i].data, itemStyle: { color: COLOURS[i % COLOURS.length] },
                    barMaxWidth: 36 });
    }
    chart.setOption({
      animation: false,
      // A canvas has no CSS: name the page's fonts (the web font has the labels' characters).
      textStyle: { fontFamily: window.getComputedStyle(document.body).fontFamily },
      grid: { left: 64, right: 16, top: 36, bottom: 48, containLabel: false },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.categories, axisLabel: { hideOverlap: true } },
      yAxis: { type: "value", name: data.unit },
      series: series
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }
  function start() {
    var button = document.getElementById("print-report");
    if (button) {
      button.addEventListener("click", function () { window.print(); });
    }
    if (!window.echarts) {
      return;
    }
    var charts = document.querySelectorAll("[data-report-chart]");
    var drawAll = function () {
      for (var i = 0; i < charts.length; i += 1) {
        draw(charts[i]);
      }
    };
    // Drawn once the web fonts have loaded, or the canvas keeps boxes for Chinese labels.
    if (document.fonts && document.fonts.ready) {
      document.fonts.ready.then(drawAll, drawAll);
    } else {
      drawAll();
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
