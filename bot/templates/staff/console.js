// Staff console: live greeting preview (progressive enhancement; the form works without it).
// While the occasion or note changes, the form is posted as a "preview" in the background
// and the preview block of the answer replaces the one on the page. Nothing is sent.
(function () {
  "use strict";
  var form = document.getElementById("greeting-form");
  if (!form || !window.fetch || !window.DOMParser) { return; }
  var timer = null;
  var seq = 0;
  function refresh() {
    var data = new FormData(form);
    data.set("action", "preview");
    var mine = ++seq;
    // form.action is shadowed by the buttons named "action": read the attribute.
    // URLSearchParams: posted urlencoded, as the form itself is (the server refuses multipart).
    var body = new URLSearchParams(data);
    fetch(form.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        if (mine !== seq) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("draft");
        var old = document.getElementById("draft");
        if (!fresh) { return; }
        if (old) { old.replaceWith(fresh); } else { form.insertAdjacentElement("afterend", fresh); }
      })
      .catch(function () { /* the Preview button still works */ });
  }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 400); }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
}());
