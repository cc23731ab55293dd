// Book covers degrade to a placeholder: an <img class="cover-img"> that fails to load (offline, 404)
// or that is Amazon's 1x1 "no image" GIF gets the local SVG instead. Listeners run in the capture
// phase because load/error events do not bubble; React-rendered images are covered too.
(function () {
  var PLACEHOLDER = "/assets/cover-placeholder.svg";
  function fallback(img) {
    if (img.getAttribute("src") !== PLACEHOLDER) {
      img.setAttribute("src", PLACEHOLDER);
      img.classList.add("cover-missing");
    }
  }
  document.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t.tagName === "IMG" && t.classList.contains("cover-img")) fallback(t);
  }, true);
  document.addEventListener("load", function (e) {
    var t = e.target;
    if (t && t.tagName === "IMG" && t.classList.contains("cover-img") && t.naturalWidth <= 1) fallback(t);
  }, true);
})();
