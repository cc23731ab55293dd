// Which plotly.js a page gets. dcc.Graph loads plotly.js from window._dashPlotlyJSURL the first
// time a graph renders (unless window.Plotly exists). Pages with only 2D charts get plotly.js's
// 1.5 MB cartesian bundle (served by app/main.py at /_bookrec/plotly-2d.js), parsed three times
// faster than the full 4.8 MB one; pages that draw 3D figures get Dash's full bundle. A client-side
// navigation to a 3D page after the 2D bundle was handed out reloads that page, so it gets the full one.
(function () {
  var PAGES_3D = ["/metadata"]; // app/pages/metadata.py draws a go.Surface
  var LIGHT = "/_bookrec/plotly-2d.js";
  var full = null; // the renderer's own URL, captured when it sets it
  var handedLight = false;
  function is3d(path) {
    return PAGES_3D.some(function (p) { return path === p || path.indexOf(p + "/") === 0; });
  }
  Object.defineProperty(window, "_dashPlotlyJSURL", {
    configurable: true,
    get: function () {
      if (full && is3d(window.location.pathname)) return full;
      handedLight = true;
      return LIGHT;
    },
    set: function (url) { full = url; },
  });
  function check() {
    if (handedLight && is3d(window.location.pathname)) window.location.reload();
  }
  var push = window.history.pushState;
  window.history.pushState = function () {
    var out = push.apply(this, arguments);
    check();
    return out;
  };
  window.addEventListener("popstate", check);
})();
