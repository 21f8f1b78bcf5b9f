/* The dashboard's charts: each element with `data-chart` (JSON the page wrote: labels, series
   of {name, type: bar|line, values, axis: 0|1}, and `whole` for counts) becomes an ECharts
   chart; a series on axis 1 gets a second value axis on the right. No inline script (the CSP
   forbids it); ES5. */
(function () {
  "use strict";
  var COLOURS = ["#0b6e4f", "#c0582b", "#3c6fb0"];
  function draw(element) {
    var data;
    try {
      data = JSON.parse(element.getAttribute("data-chart"));
    } catch (e) {
      return;
    }
    var twoAxes = false;
    var series = data.series.map(function (s, i) {
      twoAxes = twoAxes || s.axis === 1;
      return { name: s.name, type: s.type, data: s.values, yAxisIndex: s.axis || 0,
               itemStyle: { color: COLOURS[i % COLOURS.length] }, barMaxWidth: 28 };
    });
    var axes = [{ type: "value", minInterval: data.whole ? 1 : 0 }];
    if (twoAxes) {
      axes.push({ type: "value", splitLine: { show: false } });
    }
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      // A canvas has no CSS: name the page's fonts (the web font has the labels' characters).
      textStyle: { fontFamily: window.getComputedStyle(document.body).fontFamily },
      grid: { left: 48, right: twoAxes ? 56 : 16, top: 36, bottom: 40 },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.labels, axisLabel: { hideOverlap: true } },
      yAxis: axes,
      series: series
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }
  function start() {
    if (!window.echarts) {
      return;
    }
    var charts = document.querySelectorAll("[data-chart]");
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
