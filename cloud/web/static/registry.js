/* The registry screens' script (no inline script: the CSP forbids it; ES5):
   - a time-of-use tariff's day (`data-day-chart`: JSON the page wrote: each period's name,
     price, colour and spans in hours) as an ECharts chart (drawn by `charts.js`): one
     coloured block per period;
   - the tariff form shows only the part of the kind chosen (`data-kinds`); without script
     every part shows and the others are ignored on saving. */
(function () {
  "use strict";
  function series(period) {
    var data = [];
    for (var i = 0; i < period.spans.length; i += 1) {
      var span = period.spans[i];
      data.push([span[0], period.price], [span[1], period.price], [span[1], null]);
    }
    return { name: period.name + " " + period.price, type: "line", data: data,
             step: false, symbol: "none", connectNulls: false,
             lineStyle: { color: period.colour, width: 2 },
             itemStyle: { color: period.colour },
             areaStyle: { color: period.colour, opacity: 0.35 } };
  }
  function options(day) {
    return {
      grid: { left: 56, right: 16, top: 40, bottom: 36 },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value", min: 0, max: 24, interval: 2, name: day.hour,
               axisLabel: { formatter: "{value}:00" } },
      yAxis: { type: "value", name: day.unit, min: 0 },
      series: day.periods.map(series)
    };
  }
  function showKinds() {
    var select = document.getElementById("f-kind");
    var parts = document.querySelectorAll("[data-kinds]");
    if (!select) {
      return;
    }
    var apply = function () {
      for (var i = 0; i < parts.length; i += 1) {
        var kinds = parts[i].getAttribute("data-kinds").split(" ");
        parts[i].hidden = kinds.indexOf(select.value) < 0;
      }
    };
    select.addEventListener("change", apply);
    apply();
  }
  if (window.VoltbookCharts) {
    window.VoltbookCharts.each("data-day-chart", options, function (element, day) {
      element.setAttribute("data-drawn", String(day.periods.length));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", showKinds);
  } else {
    showKinds();
  }
}());
