/* The field app's service worker (scope /field/): pages and their files from the network when
   it answers, else from the cache `field.js` fills (the app shell). Posts are never touched:
   what is typed offline waits in IndexedDB (field.js), not here. */
"use strict";
const CACHE = "voltbook-field-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function networkFirst(request) {
  try {
    const answer = await fetch(request);
    if (answer.ok && !answer.redirected && new URL(request.url).pathname.startsWith("/field/")) {
      const cache = await caches.open(CACHE);
      await cache.put(request, answer.clone());
    }
    return answer;
  } catch (offline) {
    const kept = await caches.match(request, { ignoreSearch: request.mode === "navigate" });
    if (kept) return kept;
    if (request.mode === "navigate") {
      const shell = await caches.match("/field/");
      if (shell) return shell;
    }
    throw offline;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(caches.match(request).then((kept) => kept || fetch(request)));
  } else if (url.pathname.startsWith("/field/") && url.pathname !== "/field/sw.js") {
    event.respondWith(networkFirst(request));
  }
});
