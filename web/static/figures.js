// Draws the figures page's charts from the JSON the server put in #figures-data.
(function () {
  const source = document.getElementById("figures-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const scores = document.getElementById("score-chart");
  if (scores) {
    window.scoreChart = new Chart(scores, {
      type: "bar",
      data: {labels: data.labels, datasets: [{label: "综合得分", data: data.scores, backgroundColor: "#1f4e79"}]},
      options: {animation: false, scales: {y: {min: 0, max: 100}}},
    });
  }
  const trend = document.getElementById("trend-chart");
  if (trend) {
    window.trendChart = new Chart(trend, {
      type: "line",
      data: {labels: data.trend.labels, datasets: [
        {label: "好评率 %", data: data.trend.good_rate, yAxisID: "rate", borderColor: "#1f7a3a", spanGaps: true},
        {label: "差评数", data: data.trend.negative, yAxisID: "count", borderColor: "#b00020", type: "bar"},
      ]},
      options: {animation: false, scales: {rate: {position: "left", min: 0, max: 100},
                                           count: {position: "right", beginAtZero: true}}},
    });
  }
})();
// The period picker shows the fields of the kind chosen (季度, 月份 or 日期范围); without script all show.
(function () {
  const kind = document.getElementById("period-kind");
  if (!kind) return;
  const show = function () {
    document.querySelectorAll("#period-picker [data-kind]").forEach(function (group) {
      group.hidden = group.dataset.kind !== kind.value;
    });
  };
  kind.addEventListener("change", show);
  show();
})();
