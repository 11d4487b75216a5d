// The 补充评价 page: reason tags are for a 差评, and the chosen level is spelled out under the stars. The server
// checks the same rule without this script.
(function () {
  const form = document.getElementById("rate"), tags = document.getElementById("tags"),
        chosen = document.getElementById("chosen");
  if (!form || !tags || !chosen) return;
  function show() {
    const picked = form.querySelector('input[name="level"]:checked');
    tags.hidden = !(picked && picked.dataset.negative === "yes");
    chosen.textContent = picked ? picked.labels[0].querySelector(".name").textContent : "";
  }
  form.addEventListener("change", show);
  show();
})();
