/* The console's live feed (`/console/events`, cloud/web/live.py), on every console page: the
   monitoring table's cells change in place as readings arrive, and new alarms pop up grouped
   by building and floor (with a beep, if the user wants one). The words come from the server
   (the `hello` event), so nothing here is in one language. No inline script (the CSP forbids
   it); ES5. The cursor and the pop-up's groups are kept in sessionStorage, so the next page of
   the same tab resumes where this one stopped and still shows what was not dismissed. A group
   is kept as codes (kind, building, floor, node) and drawn with the words of this page's
   `hello`: a page loaded in another language says it in that one. */
(function () {
  "use strict";
  var LAST = "vb-live-last";
  var GROUPS = "vb-live-popup"; // groups of codes (was "vb-live-groups": of words)
  var words = {};
  var prefs = { popup: true, sound: true };
  var audio = null;
  var source = null;

  function load(key) {
    try {
      return JSON.parse(window.sessionStorage.getItem(key));
    } catch (e) {
      return null;
    }
  }
  function store(key, value) {
    try {
      window.sessionStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* private mode: the feed still works, without resuming */ }
  }
  function remember(event) {
    if (event.lastEventId) {
      store(LAST, event.lastEventId);
    }
  }
  function data(event) {
    remember(event);
    return JSON.parse(event.data);
  }

  // -- the monitoring table --------------------------------------------------------------------
  function rowsByMeter() {
    var found = {};
    var rows = document.querySelectorAll("tr[data-meter]");
    for (var i = 0; i < rows.length; i += 1) {
      var key = rows[i].getAttribute("data-node") + "/" + rows[i].getAttribute("data-meter");
      (found[key] = found[key] || []).push(rows[i]);
    }
    return found;
  }
  function changed(cell) {
    cell.classList.remove("live-changed");
    void cell.offsetWidth; // restart the highlight
    cell.classList.add("live-changed");
  }
  function setText(row, column, text) {
    var cell = row.querySelector("td[data-col='" + column + "']");
    if (cell && cell.textContent !== text) {
      cell.textContent = text;
      changed(cell);
    }
  }
  function setTag(row, column, text, good) {
    var cell = row.querySelector("td[data-col='" + column + "']");
    if (!cell || cell.textContent === text) {
      return;
    }
    cell.textContent = "";
    var tag = document.createElement("span");
    tag.className = "tag " + (good ? "ok" : "bad");
    tag.textContent = text;
    cell.appendChild(tag);
    changed(cell);
  }
  function showValues(list) {
    var rows = rowsByMeter();
    for (var i = 0; i < list.length; i += 1) {
      var v = list[i];
      var mine = rows[v.node + "/" + v.meter] || [];
      for (var j = 0; j < mine.length; j += 1) {
        var row = mine[j];
        setText(row, "register", v.register);
        setText(row, "voltage", v.voltage);
        setText(row, "current", v.current);
        setText(row, "power", v.power);
        setText(row, "pf", v.pf);
        if (v.relay === null) {
          setText(row, "relay", v.relay_text);
        } else {
          setTag(row, "relay", v.relay_text, v.relay);
        }
        if (v.balance !== undefined) {
          var cell = row.querySelector("td[data-col='balance']");
          var text = v.balance + (v.arrears ? words.arrears : "");
          if (cell && cell.textContent !== text) {
            cell.textContent = v.balance;
            if (v.arrears) {
              cell.appendChild(document.createElement("br"));
              var tag = document.createElement("span");
              tag.className = "tag bad";
              tag.textContent = words.arrears;
              cell.appendChild(tag);
            }
            changed(cell);
          }
          row.classList.toggle("arrears", v.arrears);
        }
        row.setAttribute("data-live-at", String(Date.now()));
      }
    }
  }
  function showNodes(list) {
    var rows = document.querySelectorAll("tr[data-node]");
    for (var i = 0; i < list.length; i += 1) {
      for (var j = 0; j < rows.length; j += 1) {
        if (rows[j].getAttribute("data-node") === list[i].node) {
          setTag(rows[j], "online", list[i].online ? words.online : words.offline, list[i].online);
        }
      }
    }
  }

  // -- the pop-up ------------------------------------------------------------------------------
  function beep() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) {
      return;
    }
    try {
      audio = audio || new Context();
      if (audio.state === "suspended") {
        audio.resume();
      }
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.12;
      tone.connect(gain);
      gain.connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.25);
      var beeps = Number(document.body.getAttribute("data-beeps") || "0") + 1;
      document.body.setAttribute("data-beeps", String(beeps));
    } catch (e) { /* no sound device: the pop-up is enough */ }
  }
  // A group's place: its building and floor, or its node when it has neither (codes both).
  function placeKey(g) {
    return g.building || g.floor ? "p:" + g.building + "\u0000" + g.floor : "n:" + g.node;
  }
  function placeText(g) {
    if (g.building || g.floor) {
      return (g.building + " " + g.floor).replace(/^ +| +$/g, "");
    }
    return g.node ? words.node.replace("{node}", g.node) : words.no_place;
  }
  function kindText(kind) {
    if (words.kinds && words.kinds[kind]) return words.kinds[kind];
    // a kind this cloud has no words for (a newer concentrator's): its code, labelled
    return words.other_kind ? words.other_kind.replace("{code}", kind) : kind;
  }
  function kept() {
    var groups = load(GROUPS);
    var valid = [];
    for (var i = 0; i < (groups instanceof Array ? groups.length : 0); i += 1) {
      var g = groups[i];
      if (g && typeof g.kind === "string" && typeof g.count === "number" &&
          typeof g.building === "string" && typeof g.floor === "string" &&
          typeof g.node === "string") {
        valid.push(g);
      }
    }
    return valid;
  }
  function addAlarms(list) {
    if (!list.length) {
      return;
    }
    var groups = kept();
    for (var i = 0; i < list.length; i += 1) {
      var a = list[i];
      var key = placeKey(a);
      var found = null;
      for (var j = 0; j < groups.length; j += 1) {
        if (placeKey(groups[j]) === key && groups[j].kind === a.kind) {
          found = groups[j];
        }
      }
      if (found) {
        found.count += 1;
      } else {
        groups.push({ building: a.building || "", floor: a.floor || "", node: a.node || "",
                      kind: a.kind, count: 1 });
      }
    }
    store(GROUPS, groups);
    draw();
    if (prefs.sound) {
      beep();
    }
  }
  function element(tag, className, text) {
    var made = document.createElement(tag);
    if (className) {
      made.className = className;
    }
    if (text !== undefined) {
      made.textContent = text;
    }
    return made;
  }
  function dismiss() {
    store(GROUPS, []);
    draw();
  }
  function draw() {
    var old = document.getElementById("live-alarms");
    if (old) {
      old.parentNode.removeChild(old);
    }
    var groups = kept();
    if (!groups.length || !prefs.popup || !words.title) {
      return;
    }
    var shown = [];
    for (var k = 0; k < groups.length; k += 1) {
      shown.push({ place: placeText(groups[k]), name: kindText(groups[k].kind),
                   kind: groups[k].kind, count: groups[k].count });
    }
    shown.sort(function (x, y) {
      return x.place < y.place ? -1 : x.place > y.place ? 1 : (x.name < y.name ? -1 : 1);
    });
    var box = element("aside", "live-popup");
    box.id = "live-alarms";
    box.setAttribute("role", "alert");
    box.setAttribute("aria-labelledby", "live-alarms-title");
    var title = element("h2", "", words.title);
    title.id = "live-alarms-title";
    box.appendChild(title);
    var places = element("ul", "places");
    var current = null;
    for (var i = 0; i < shown.length; i += 1) {
      var g = shown[i];
      if (!current || current.getAttribute("data-place") !== g.place) {
        var place = element("li", "place");
        place.setAttribute("data-place", g.place);
        place.appendChild(element("strong", "", g.place));
        current = element("ul", "kinds");
        current.setAttribute("data-place", g.place);
        place.appendChild(current);
        places.appendChild(place);
      }
      var line = words.group.replace("{count}", String(g.count)).replace("{kind}", g.name);
      var item = element("li", "", line);
      item.setAttribute("data-kind", g.kind);
      current.appendChild(item);
    }
    box.appendChild(places);
    var actions = element("div", "actions");
    var open = element("a", "button primary", words.open);
    open.href = "/console/alarms";
    open.id = "live-open";
    var settings = element("a", "button", words.settings);
    settings.href = "/console/alarms/settings";
    var close = element("button", "", words.close);
    close.type = "button";
    close.id = "live-close";
    close.addEventListener("click", dismiss);
    open.addEventListener("click", dismiss);
    actions.appendChild(open);
    actions.appendChild(settings);
    actions.appendChild(close);
    box.appendChild(actions);
    document.body.appendChild(box);
  }

  // -- the feed --------------------------------------------------------------------------------
  function connect() {
    if (!window.EventSource) {
      return;
    }
    var last = load(LAST);
    var url = "/console/events";
    if (typeof last === "string" && /^\d+-\d+$/.test(last)) {
      url += "?last=" + encodeURIComponent(last);
    }
    source = new window.EventSource(url);
    source.addEventListener("hello", function (event) {
      var hello = data(event);
      words = hello.words;
      prefs = hello;
      document.body.setAttribute("data-live", "open");
      draw();
    });
    source.addEventListener("alarms", function (event) {
      addAlarms(data(event));
    });
    source.addEventListener("nodes", function (event) {
      showNodes(data(event));
    });
    source.addEventListener("values", function (event) {
      showValues(data(event));
    });
    source.addEventListener("beat", remember);
    source.addEventListener("error", function () {
      // Refused (401 after the session ended, a proxy's 502): the browser gives up, so try
      // again a little later; a network drop is retried by the browser itself.
      if (source.readyState === window.EventSource.CLOSED) {
        window.setTimeout(connect, 15000);
      }
    });
    source.addEventListener("end", function (event) {
      source.close();
      if (data(event).reason === "session") {
        window.location.assign("/console/login?expired=1");
      }
    });
  }
  function start() {
    var buttons = document.querySelectorAll("[data-print]");
    for (var i = 0; i < buttons.length; i += 1) {
      buttons[i].addEventListener("click", function () { window.print(); });
    }
    connect();
  }
  window.addEventListener("pagehide", function () {
    if (source) {
      source.close();
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
