/* The field app (/field/): registers the service worker, keeps this page and its files in the
   cache (the app shell, served offline), and queues what is typed — tickets opened (by hand or
   from an alarm), readings, ticket moves, assignments, comments and photos (the image itself, a
   Blob), cash taken, meter swaps — in IndexedDB, each with a key made here, sending them in the order they were made when the phone
   is online. The server applies a key once, so a record sent twice (a lost answer, two tabs)
   counts once. */
"use strict";
(function () {
  const CACHE = "voltbook-field-v1";
  const app = document.getElementById("field-app");
  const net = document.getElementById("net");

  function showNet() {
    if (!net) return;
    net.hidden = false;
    net.textContent = navigator.onLine ? net.dataset.online : net.dataset.offline;
    net.classList.toggle("offline", !navigator.onLine);
  }

  async function keepShell() {
    if (!("caches" in window)) return;
    const files = performance.getEntriesByType("resource").map((e) => e.name)
      .filter((u) => new URL(u).origin === location.origin && new URL(u).pathname.startsWith("/static/"));
    const cache = await caches.open(CACHE);
    await cache.addAll(["/field/", ...new Set(files)]);
    if (location.pathname !== "/field/") await cache.add(location.pathname);
    document.body.dataset.shell = "kept";
  }

  function openDb() {
    return new Promise((resolve, reject) => {
      const asked = indexedDB.open("voltbook-field", 1);
      asked.onupgradeneeded = () => asked.result.createObjectStore("queue", { keyPath: "key" });
      asked.onsuccess = () => resolve(asked.result);
      asked.onerror = () => reject(asked.error);
    });
  }

  async function store(mode, work) {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("queue", mode);
      const result = work(tx.objectStore("queue"));
      tx.oncomplete = () => resolve(result.result);
      tx.onerror = () => reject(tx.error);
    });
  }
  const queued = () => store("readonly", (s) => s.getAll());
  const enqueue = (record) => store("readwrite", (s) => s.put(record));
  const dequeue = (key) => store("readwrite", (s) => s.delete(key));

  // The order records were made in: a counter kept on the phone, not the clock (two records in
  // one millisecond, or a clock set back, would otherwise be sent in the order of their keys).
  function nextOrder() {
    const order = Number(localStorage.getItem("voltbook-field-order") || 0) + 1;
    localStorage.setItem("voltbook-field-order", String(order));
    return order;
  }
  const inOrder = (a, b) => (a.order || 0) - (b.order || 0) || a.made - b.made;

  // key → [state, text, record, link, its words] of records sent or refused here
  const outcomes = new Map();

  async function render() {
    const list = document.getElementById("queue");
    if (!list || !app) return;
    const waiting = (await queued()).sort(inOrder);
    list.textContent = "";
    const rows = waiting.map((r) => [r, "queued", app.dataset.queued, null]);
    for (const [key, [state, text, record, link, words]] of outcomes) {
      if (!waiting.some((r) => r.key === key)) rows.push([record, state, text, link, words]);
    }
    if (!rows.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = app.dataset.none;
      list.append(li);
    }
    for (const [record, state, text, link, words] of rows) {
      const li = document.createElement("li");
      li.dataset.key = record.key;
      li.dataset.kind = record.kind;
      li.dataset.state = state;
      const what = document.createElement("span");
      what.textContent = record.text;
      const tag = document.createElement("span");
      tag.className = `tag ${state}`;
      tag.textContent = text;
      li.append(what, tag);
      if (link) { // the cash receipt, to show the shop and print; the ticket opened
        const a = document.createElement("a");
        a.href = link;
        a.className = record.kind === "cash" ? "receipt-link" : "ticket-link";
        a.textContent = words;
        li.append(a);
      }
      list.append(li);
    }
  }

  let flushing = false;
  async function flush() {
    if (flushing || !navigator.onLine || !app) return;
    flushing = true;
    let moved = false;
    try {
      // In the order they were made: a ticket moved twice offline moves in that order.
      for (const record of (await queued()).sort(inOrder)) {
        let answer;
        try {
          answer = await fetch(record.blob ? `${record.url}?taken=${encodeURIComponent(record.taken)}` : record.url, {
            method: "POST", credentials: "same-origin",
            headers: record.blob
              ? { "Content-Type": record.type, "X-CSRF-Token": app.dataset.csrf, "X-Idempotency-Key": record.key }
              : { "Content-Type": "application/json", "X-CSRF-Token": app.dataset.csrf },
            body: record.blob || JSON.stringify({ ...record.body, key: record.key }),
          });
        } catch (offline) {
          break; // still offline: try again on the next "online"
        }
        if (answer.ok) {
          const said = await answer.json().catch(() => ({}));
          const held = record.kind === "swap" && said.status === "held"; // a second user decides
          outcomes.set(record.key, [held ? "held" : "sent", held ? app.dataset.held : app.dataset.sent,
            record, ...linkOf(record, said)]);
          await dequeue(record.key);
          moved = moved || ["move", "comment", "assign", "photo"].includes(record.kind);
        } else if ([404, 409, 413, 422].includes(answer.status)) {
          const said = await answer.json().catch(() => ({}));
          // An alarm's ticket opened by someone else meanwhile: refused, with a link to that one.
          outcomes.set(record.key, ["refused", `${app.dataset.refused}: ${said.error || answer.status}`, record,
            ...linkOf(record, said)]);
          await dequeue(record.key);
        } else if (answer.status === 401 || answer.status === 403) {
          outcomes.set(record.key, ["queued", app.dataset.relogin, record]);
          break;
        } else {
          break;
        }
      }
    } finally {
      flushing = false;
      document.body.dataset.flushed = String(Date.now());
      await render();
    }
    if (moved && document.getElementById("ticket")) location.reload(); // the new status, history
  }

  // Where a sent record's answer leads: the cash receipt, or the ticket opened (or holding the alarm).
  function linkOf(record, said) {
    if (!said.url) return [null, null];
    if (record.kind === "cash") return [said.url, app.dataset.receipt];
    if (record.kind === "open") return [said.url, app.dataset.ticketNo.replace("{id}", said.url.split("/").pop())];
    return [null, null];
  }

  function newKey() {
    return crypto.randomUUID ? crypto.randomUUID()
      : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // A photo as the queue keeps it: the camera's file as a Blob, sent as its bytes to `url`.
  async function photoRecord(file, url, text) {
    const taken = new Date(file.lastModified || Date.now()).toISOString();
    return { key: newKey(), kind: "photo", made: Date.now(), order: nextOrder(), url,
      blob: new Blob([await file.arrayBuffer()], { type: file.type }), type: file.type, taken,
      text: `${text} (${Math.ceil(file.size / 1024)} KB)` };
  }

  // `photo(form, record)`: the file chosen with the record, if any, queued right after it.
  function hook(form, kind, body, text, photo) {
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      if (!form.checkValidity()) return;
      event.preventDefault();
      const record = { key: newKey(), kind, made: Date.now(), order: nextOrder(), url: form.getAttribute("action"),
        body: body(form, event.submitter), text: text(form, event.submitter) };
      const file = photo ? photo(form) : null;
      // Cleared before the queue's write: what is typed meanwhile belongs to the next record.
      form.reset();
      await enqueue(record);
      if (file) await enqueue(await photoRecord(file, `/field/readings/${record.key}/photos`, `${record.text} · ${form.dataset.photo}`));
      await render();
      await flush();
      // Opened online: to the ticket, as the form without script goes (offline: it waits).
      const done = outcomes.get(record.key);
      if (kind === "open" && done && done[0] === "sent") location.assign(done[3]);
    });
  }

  const readingForm = document.getElementById("reading-form");
  if (readingForm) document.getElementById("reading-photo").hidden = false; // sent as bytes: script only
  hook(readingForm, "reading", (form) => ({
    address: form.elements.address.value.trim(),
    kwh: form.elements.kwh.value.trim(),
    read_at: new Date().toISOString(),
  }), (form) => `${form.elements.address.value.trim()} · ${form.elements.kwh.value.trim()} kWh`,
  (form) => (form.elements.photo.files && form.elements.photo.files[0]) || null);
  hook(document.getElementById("cash-form"), "cash", (form) => ({
    account: form.elements.account.value.trim(), amount: form.elements.amount.value.trim(),
  }), (form) => `${form.elements.account.value.trim()} · ¥${yuanText(form.elements.amount.value)}`);
  hook(document.getElementById("swap-form"), "swap", (form) => {
    const body = {};
    for (const name of ["old", "final_kwh", "new_address", "protocol", "multiplier", "initial_kwh"]) {
      body[name] = form.elements[name].value.trim();
    }
    return body;
  }, (form) => `${form.elements.old.value.trim()} → ${form.elements.new_address.value.trim()}`);
  const place = (form) => ["meter", "node", "site"].map((n) => form.elements[n].value.trim()).filter(Boolean).join(" · ");
  hook(document.getElementById("ticket-form"), "open", (form) => ({
    kind: form.elements.kind.value, meter: form.elements.meter.value.trim(), node: form.elements.node.value.trim(),
    site: form.elements.site.value.trim(), note: form.elements.note.value,
  }), (form) => [form.elements.kind.selectedOptions[0].textContent, place(form),
    form.elements.note.value.trim().slice(0, 30)].filter(Boolean).join(" · "));
  for (const form of document.querySelectorAll(".alarm-ticket-form")) {
    hook(form, "open", (f) => ({ alarm: f.elements.alarm.value, note: "" }),
      (f) => `${f.dataset.alarm} → ${f.querySelector("button").textContent}`);
    // One ticket per alarm: the button is spent once its ticket is queued.
    form.addEventListener("submit", () => { if (form.checkValidity()) form.querySelector("button").disabled = true; });
  }
  hook(document.getElementById("move-form"), "move", (form, submitter) => ({
    to: submitter ? submitter.value : "", note: form.elements.note.value,
  }), (form, submitter) => `${form.dataset.ticket} → ${submitter ? submitter.textContent : ""}`);

  hook(document.getElementById("assign-form"), "assign", (form) => ({
    user: form.elements.user.value,
  }), (form) => `${form.dataset.ticket} → ${form.elements.user.selectedOptions[0].textContent}`);
  hook(document.getElementById("comment-form"), "comment", (form) => ({
    note: form.elements.note.value,
  }), (form) => `${form.dataset.ticket} · ${form.elements.note.value.trim().slice(0, 30)}`);

  // A photo: queued as soon as it is taken (the camera's file, kept in IndexedDB as a Blob) and
  // sent as its bytes. Without script the form posts it (multipart) with its send button.
  const photoForm = document.getElementById("photo-form");
  if (photoForm) {
    photoForm.classList.add("queued"); // field.css hides its send button
    const input = photoForm.elements.photo;
    input.addEventListener("change", async () => {
      const file = input.files && input.files[0];
      if (!file) return;
      await enqueue(await photoRecord(file, photoForm.getAttribute("action"),
        `${photoForm.dataset.ticket} · ${photoForm.dataset.photo}`));
      photoForm.reset();
      await render();
      await flush();
    });
  }

  // The login page (after logging out, or a session that ended) forgets the kept pages: they
  // name the user. What waits to be sent stays in IndexedDB.
  if (document.getElementById("field-login") && "caches" in window) caches.delete(CACHE);

  const print = document.getElementById("print");
  if (print) print.addEventListener("click", () => window.print());

  window.addEventListener("online", () => { showNet(); flush(); });
  window.addEventListener("offline", showNet);
  showNet();
  render().then(flush);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/field/sw.js", { scope: "/field/" })
      .then(() => navigator.serviceWorker.ready)
      .then(() => (navigator.onLine ? keepShell() : null))
      .catch(() => {});
  }
})();

// The amount as typed ("80.5"), shown with its two decimals ("80.50"), by text, never floats.
function yuanText(typed) {
  const value = typed.trim();
  const parts = /^(\d+)(?:\.(\d{0,2}))?$/.exec(value);
  return parts ? `${parts[1]}.${(parts[2] || "").padEnd(2, "0")}` : value;
}
