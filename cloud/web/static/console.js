/* The console's charts: each element with `data-chart` (JSON the page wrote: days, kWh, name)
   becomes an ECharts line chart. No inline script (the CSP forbids it); ES5. */
(function () {
  "use strict";
  function draw(element) {
    var data;
    try {
      data = JSON.parse(element.getAttribute("data-chart"));
    } catch (e) {
      return;
    }
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      // A canvas has no CSS: name the page's fonts (the web font has the labels' characters).
      textStyle: { fontFamily: window.getComputedStyle(document.body).fontFamily },
      grid: { left: 48, right: 16, top: 24, bottom: 32 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.days, boundaryGap: false },
      yAxis: { type: "value", name: data.name },
      series: [{ name: data.name, type: "line", data: data.kwh, smooth: false,
                 areaStyle: { opacity: 0.15 }, itemStyle: { color: "#0b6e4f" } }]
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
