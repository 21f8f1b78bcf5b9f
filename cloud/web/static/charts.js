/* The console's charts, shared by its screens: `VoltbookCharts.each(attribute, options, drawn)`
   draws every element carrying `attribute` (JSON the page wrote) with ECharts once the page and
   its web fonts have loaded (a canvas drawn before keeps boxes for Chinese labels).
   `options(data)` turns the JSON into the chart's options; the page's font family is added (a
   canvas has no CSS) and animation is off; `drawn(element, data)`, if given, follows each
   chart. No inline script (the CSP forbids it); ES5. */
(function () {
  "use strict";
  function draw(element, attribute, options) {
    var data;
    try {
      data = JSON.parse(element.getAttribute(attribute));
    } catch (e) {
      return null;
    }
    var option = options(data);
    option.animation = false;
    option.textStyle = { fontFamily: window.getComputedStyle(document.body).fontFamily };
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    chart.setOption(option);
    window.addEventListener("resize", function () { chart.resize(); });
    return data;
  }
  function each(attribute, options, drawn) {
    var start = function () {
      if (!window.echarts) {
        return;
      }
      var found = document.querySelectorAll("[" + attribute + "]");
      var drawAll = function () {
        for (var i = 0; i < found.length; i += 1) {
          var data = draw(found[i], attribute, options);
          if (data !== null && drawn) {
            drawn(found[i], data);
          }
        }
      };
      if (document.fonts && document.fonts.ready) {
        document.fonts.ready.then(drawAll, drawAll);
      } else {
        drawAll();
      }
    };
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start);
    } else {
      start();
    }
  }
  window.VoltbookCharts = { each: each };
}());
