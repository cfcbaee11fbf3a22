#pragma once
// The two pages, served at the same paths as the JSON (GET /live, GET /logs) to a request whose
// Accept prefers text/html. Plain HTML and JavaScript, no build step, no external asset: each
// page opens an EventSource on its own path (the server pushes the state whenever it changes,
// and ends the stream at a graceful stop; EventSource reconnects by itself).

#include <string_view>

namespace predictions {

inline constexpr std::string_view live_page = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Predictions: live results</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f4f6f9; }
header { background: #14365d; color: #fff; padding: 12px 20px; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 20px; margin: 0; }
header a { color: #cfe2ff; }
main { padding: 16px 20px; }
.status.live::before { content: "\25CF  "; color: #3ddc84; }
.status.down::before { content: "\25CF  "; color: #ff6b6b; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
.card { background: #fff; border-radius: 6px; padding: 10px 14px; box-shadow: 0 1px 2px #0002; min-width: 120px; }
.card b { display: block; font-size: 24px; }
table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0002; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e7ee; vertical-align: top; }
th { background: #e9eef5; font-weight: 600; }
.score { display: inline-block; background: #e9eef5; border-radius: 4px; padding: 0 6px; margin: 1px 4px 1px 0; }
</style></head>
<body>
<header><h1>Live results</h1><a href="/logs">Recent predictions</a>
<span id="status" class="status down" role="status">connecting</span></header>
<main>
<div class="cards">
<div class="card">Predictions<b id="total">0</b></div>
<div class="card">Group stage<b id="phase-1">0</b></div>
<div class="card">Round of 16<b id="phase-2">0</b></div>
<div class="card">Quarter-finals<b id="phase-3">0</b></div>
<div class="card">Finals<b id="phase-4">0</b></div>
</div>
<table><thead><tr><th>Match</th><th>Predictions</th><th>Most predicted scores</th></tr></thead>
<tbody id="matches"><tr><td colspan="3">No prediction yet.</td></tr></tbody></table>
</main>
<script>
'use strict';
const statusEl = document.getElementById('status');
function cell(text) { const td = document.createElement('td'); td.textContent = text; return td; }
function render(live) {
  document.getElementById('total').textContent = live.total;
  for (let p = 1; p <= 4; ++p) document.getElementById('phase-' + p).textContent = live.phases[String(p)] || 0;
  const body = document.getElementById('matches');
  body.replaceChildren();
  if (!live.matches.length) { const tr = document.createElement('tr'); const td = cell('No prediction yet.'); td.colSpan = 3; tr.append(td); body.append(tr); return; }
  for (const m of live.matches) {
    const tr = document.createElement('tr');
    tr.dataset.match = m.team1 + ' - ' + m.team2;
    tr.append(cell(m.team1 + ' - ' + m.team2), cell(String(m.total)));
    const scores = document.createElement('td');
    Object.entries(m.scores).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 6).forEach(([s, n]) => {
      const span = document.createElement('span'); span.className = 'score'; span.textContent = s + ' \u00d7' + n; scores.append(span);
    });
    tr.append(scores);
    body.append(tr);
  }
}
const source = new EventSource('/live');
source.addEventListener('live', (e) => render(JSON.parse(e.data)));
source.onopen = () => { statusEl.textContent = 'live'; statusEl.className = 'status live'; };
source.onerror = () => { statusEl.textContent = 'reconnecting'; statusEl.className = 'status down'; };
</script>
</body></html>
)html";

inline constexpr std::string_view logs_page = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Predictions: recent logs</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f4f6f9; }
header { background: #14365d; color: #fff; padding: 12px 20px; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 20px; margin: 0; }
header a { color: #cfe2ff; }
main { padding: 16px 20px; }
.status.live::before { content: "\25CF  "; color: #3ddc84; }
.status.down::before { content: "\25CF  "; color: #ff6b6b; }
table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0002; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e7ee; }
th { background: #e9eef5; font-weight: 600; }
td.id { font-family: ui-monospace, monospace; font-size: 12px; color: #556; }
</style></head>
<body>
<header><h1>Recent predictions</h1><a href="/live">Live results</a>
<span id="status" class="status down" role="status">connecting</span></header>
<main>
<table><thead><tr><th>Received</th><th>Match</th><th>Score</th><th>Phase</th><th>Id</th></tr></thead>
<tbody id="logs"><tr><td colspan="5">No prediction yet.</td></tr></tbody></table>
</main>
<script>
'use strict';
const phases = { 1: 'Group stage', 2: 'Round of 16', 3: 'Quarter-finals', 4: 'Finals' };
const statusEl = document.getElementById('status');
const limit = new URLSearchParams(location.search).get('limit') || '50';
function cell(text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; return td; }
function render(list) {
  const body = document.getElementById('logs');
  body.replaceChildren();
  if (!list.logs.length) { const tr = document.createElement('tr'); const td = cell('No prediction yet.'); td.colSpan = 5; tr.append(td); body.append(tr); return; }
  for (const l of list.logs) {
    const tr = document.createElement('tr');
    tr.append(cell(new Date(l.receivedAt).toLocaleTimeString()), cell(l.team1 + ' - ' + l.team2), cell(l.score),
              cell(phases[l.phase] || String(l.phase)), cell(l.id, 'id'));
    body.append(tr);
  }
}
const source = new EventSource('/logs?limit=' + encodeURIComponent(limit));
source.addEventListener('logs', (e) => render(JSON.parse(e.data)));
source.onopen = () => { statusEl.textContent = 'live'; statusEl.className = 'status live'; };
source.onerror = () => { statusEl.textContent = 'reconnecting'; statusEl.className = 'status down'; };
</script>
</body></html>
)html";

} // namespace predictions
