/* Pay inside WeChat's in-app browser: call getBrandWCPayRequest with the order's signed
   parameters (from data-params), then go to the order's page whatever the outcome (it shows
   the real state, from the provider's notification). ES5 only: old WeChat WebViews. */
(function () {
  var holder = document.getElementById("wxpay");
  if (!holder) { return; }
  var params = JSON.parse(holder.getAttribute("data-params"));
  var next = holder.getAttribute("data-next");
  function pay() {
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function () {
      window.location.href = next;
    });
  }
  if (typeof window.WeixinJSBridge === "undefined") {
    if (document.addEventListener) {
      document.addEventListener("WeixinJSBridgeReady", pay, false);
    } else if (document.attachEvent) {
      document.attachEvent("WeixinJSBridgeReady", pay);
      document.attachEvent("onWeixinJSBridgeReady", pay);
    }
  } else {
    pay();
  }
})();
