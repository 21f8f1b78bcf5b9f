/* A meter's chart (`data-chart`: JSON the page wrote: days, kWh, name) as an ECharts line, drawn
   by `charts.js`. No inline script (the CSP forbids it); ES5. */
(function () {
  "use strict";
  window.VoltbookCharts.each("data-chart", function (data) {
    return {
      grid: { left: 48, right: 16, top: 24, bottom: 32 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.days, boundaryGap: false },
      yAxis: { type: "value", name: data.name },
      series: [{ name: data.name, type: "line", data: data.kwh, smooth: false,
                 areaStyle: { opacity: 0.15 }, itemStyle: { color: "#0b6e4f" } }]
    };
  });
}());
