/* The dashboard's charts (`data-chart`: JSON the page wrote: labels, series of {name, type:
   bar|line, values, axis: 0|1}, and `whole` for counts), drawn by `charts.js`; a series on
   axis 1 gets a second value axis on the right. No inline script (the CSP forbids it); ES5. */
(function () {
  "use strict";
  var COLOURS = ["#0b6e4f", "#c0582b", "#3c6fb0"];
  window.VoltbookCharts.each("data-chart", function (data) {
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
    return {
      grid: { left: 48, right: twoAxes ? 56 : 16, top: 36, bottom: 40 },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.labels, axisLabel: { hideOverlap: true } },
      yAxis: axes,
      series: series
    };
  });
}());
