// edge-router admin dashboard. Plain DOM + uPlot; no framework, no build step.
// Data from clients (models, tenants, paths...) only ever goes into textContent.
'use strict';

const POLL_MS = 2000;          // /dashboard/api/status poll interval
const RECONNECT_MS = 2000;     // routing-log stream reconnect delay
const HISTORY_S = 600;         // in-flight / latency charts keep 10 minutes
const LOG_ROWS = 100;          // routing-log rows kept
const CHART_HEIGHT = 220;
const DASH = '—';
const TYPE_ORDER = ['local', 'cloud', 'edge'];
const TYPE_COLORS = { local: '#2f7ed8', cloud: '#8a5cc2', edge: '#e0892c' };
const PALETTE = ['#2f7ed8', '#e0892c', '#3a9b5c', '#c94a5e', '#8a5cc2', '#1fa2a8', '#b59a1e', '#6b7785'];
const FETCH_OPTS = { credentials: 'same-origin', cache: 'no-store' };

// ---------- formatting

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fixed = (v, digits) => (isNum(v) ? v.toFixed(digits) : DASH);
const pct = (v) => (isNum(v) ? (v * 100).toFixed(1) + '%' : DASH);
const text = (v) => (v == null || v === '' ? DASH : String(v));
const pad = (n, width = 2) => String(n).padStart(width, '0');

// Local clock time, HH:MM:SS or HH:MM:SS.mmm.
function clock(date, withMs) {
  if (!(date instanceof Date) || isNaN(date)) return DASH;
  const hms = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return withMs ? `${hms}.${pad(date.getMilliseconds(), 3)}` : hms;
}
const hhmm = (seconds) => clock(new Date(seconds * 1000)).slice(0, 5);

const duration = (s) => (isNum(s) ? `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m` : DASH);

function bytes(n) {
  if (!isNum(n)) return DASH;
  const i = n > 0 ? Math.min(3, Math.floor(Math.log2(n) / 10)) : 0;
  return (n / 1024 ** i).toFixed(i ? 1 : 0) + ' ' + ['B', 'KiB', 'MiB', 'GiB'][i];
}

// ---------- DOM helpers

function el(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content != null) node.textContent = String(content);
  return node;
}

// A table cell; `field` sets data-field (then its textContent must be the bare value).
function cell(content, field, className) {
  const td = el('td', className, content);
  if (field) td.dataset.field = field;
  return td;
}

// A horizontal meter: fraction 0..1, coloured by level.
function meter(fraction) {
  const f = Math.max(0, Math.min(1, fraction));
  const bar = el('div', 'meter' + (f >= 0.9 ? ' high' : f >= 0.7 ? ' warn' : ''));
  const fill = el('div', 'meter-fill');
  fill.style.width = (f * 100).toFixed(1) + '%';
  bar.append(fill);
  return bar;
}

const byField = (name) => document.querySelector(`[data-field="${name}"]:not(tr *)`); // page-level fields
const setText = (selector, value) => { document.querySelector(selector).textContent = value; };

// ---------- error banner (one message per source: "status", "log")

const errors = new Map();

// Throws on HTTP errors; a redirect to the login page counts as 401 (session expired).
function checkResponse(res) {
  const status = res.redirected && res.url.includes('/dashboard/login') ? 401 : res.status;
  if (status === 401 || !res.ok) throw Object.assign(new Error(`HTTP ${status}`), { status });
  return res;
}

function setError(source, err) {
  if (err) errors.set(source, err); else errors.delete(source);
  const banner = document.getElementById('banner');
  banner.replaceChildren();
  let expired = false;
  for (const [src, e] of errors) {
    if (e.status === 401) { expired = true; continue; }
    const why = e instanceof TypeError ? 'cannot reach the router' : e.message; // fetch() network errors are TypeErrors
    banner.append(el('div', null, `${src === 'status' ? 'Status' : 'Routing log'}: ${why}. Retrying…`));
  }
  if (expired) {
    const line = el('div', null, 'Session expired, ');
    line.append(Object.assign(el('a', null, 'log in again'), { href: '/dashboard/login' }), '.');
    banner.prepend(line);
  }
  banner.hidden = errors.size === 0;
}

// ---------- status: header, tiles, nodes table

// Node types in display order: local, cloud, edge, then any others alphabetically.
function nodeTypes(nodes) {
  const seen = new Set(nodes.map((n) => String(n.type)));
  const others = [...seen].filter((t) => !TYPE_ORDER.includes(t)).sort();
  return TYPE_ORDER.filter((t) => seen.has(t)).concat(others);
}
const sum = (list, pick) => list.reduce((acc, item) => acc + (Number(pick(item)) || 0), 0);

function renderHeader(status) {
  const config = status.config || {};
  setText('#config-name', text(status.name));
  document.title = `${status.name || 'edge-router'} · edge-router`;
  setText('#config-file', text(config.file));
  byField('generation').textContent = isNum(config.generation) ? String(config.generation) : DASH;
  byField('config_sha').textContent = config.sha256 ? String(config.sha256).slice(0, 12) : DASH;
  byField('config_sha').title = config.sha256 || '';
  const loaded = new Date(config.loaded_at);
  setText('#config-loaded', isNaN(loaded) ? text(config.loaded_at) : `${loaded.toLocaleDateString()} ${clock(loaded)}`);
  setText('#version', status.version ? `config version ${status.version}` : '');
  setText('#last-refresh', clock(new Date()));
}

function renderTiles(status) {
  const nodes = status.nodes || [];

  // "local 45.2% / cloud 38.7% / edge 16.1%"
  const dist = document.getElementById('distribution');
  dist.replaceChildren();
  nodeTypes(nodes).forEach((type, i) => {
    const share = sum(nodes.filter((n) => String(n.type) === type), (n) => n.last_hour && n.last_hour.share_of_traffic);
    const value = el('span', 'share', pct(share));
    value.dataset.type = type;
    value.dataset.field = 'share';
    const label = el('span', 'type-label', type + ' ');
    label.style.setProperty('--dot', TYPE_COLORS[type] || '#6b7785');
    dist.append(i > 0 ? ' / ' : '', label, value);
  });
  if (!nodes.length) dist.textContent = 'no nodes';

  const cache = status.cache_store || {};
  const lookups = (cache.hits || 0) + (cache.misses || 0);
  byField('cache_hit_ratio').textContent = lookups > 0 ? pct(cache.hits / lookups) : DASH;
  setText('#cache-note', `${cache.hits || 0} hits / ${lookups} lookups · ${cache.entries || 0} entries · ${bytes(cache.bytes)} of ${bytes(cache.capacity)}`);

  const budgeted = nodes.filter((n) => n.today && isNum(n.today.max_cost_per_day));
  byField('spend_today').textContent = sum(nodes, (n) => n.today && n.today.cost).toFixed(4);
  setText('#budget-total', budgeted.length ? ' / ' + sum(budgeted, (n) => n.today.max_cost_per_day).toFixed(4) : '');
  const reserved = sum(nodes, (n) => n.today && n.today.reserved);
  setText('#budget-note', (budgeted.length ? `budget of ${budgeted.length} node(s)` : 'no node budgets') +
    (reserved > 0 ? ` · ${reserved.toFixed(4)} reserved` : '') + ` · day resets in ${duration(status.budget_day_resets_in_s)}`);

  byField('requests_in_flight').textContent = isNum(status.requests_in_flight) ? String(status.requests_in_flight) : DASH;
  const healthy = nodes.filter((n) => n.health === 'healthy').length;
  setText('#inflight-note', `${nodes.length} nodes · ${healthy} healthy · ${status.cache_hits || 0} cache hits served`);
}

function breakerText(breaker) {
  if (!breaker) return DASH;
  const state = text(breaker.state);
  if (state === 'open' && isNum(breaker.probe_in_ms)) return `open · probe in ${Math.ceil(breaker.probe_in_ms / 1000)}s`;
  if (state === 'closed' && breaker.failures > 0) return `closed · ${breaker.failures} failures`;
  return state;
}

function nodeRow(node, color) {
  const hour = node.last_hour || {};
  const today = node.today || {};
  const tr = el('tr');
  tr.dataset.node = node.id;

  const id = cell(null, null, 'node-id');
  const swatch = el('span', 'swatch');
  swatch.style.background = color;
  const where = [node.provider, node.region, node.location].filter((v) => v != null).join(' · ');
  id.append(swatch, String(node.id), el('span', 'muted small', where ? ' ' + where : ''));

  const health = cell(null, 'health');
  health.append(el('span', `badge health-${node.health}`, text(node.health)));
  const breaker = cell(null, 'breaker');
  breaker.append(el('span', `badge breaker-${node.breaker && node.breaker.state}`, breakerText(node.breaker)));

  const flags = cell(null, null);
  if (node.draining) flags.append(el('span', 'badge warn', 'draining'));
  if (node.rate_limited_for_ms > 0) flags.append(el('span', 'badge warn', `rate-limited ${Math.ceil(node.rate_limited_for_ms / 1000)}s`));
  if (!flags.childNodes.length) flags.append(el('span', 'muted', 'no'));

  const capacity = isNum(node.max_concurrent) ? node.max_concurrent : null;
  const loadMeter = cell(null, null, 'meter-cell');
  if (capacity) loadMeter.append(meter(node.in_flight / capacity));

  const budget = isNum(today.max_cost_per_day) ? today.max_cost_per_day : null;
  const spendMeter = cell(null, null, 'meter-cell');
  if (budget) spendMeter.append(meter((today.cost || 0) / budget));

  tr.append(id, cell(text(node.type)), health, breaker, flags,
    cell(isNum(node.in_flight) ? String(node.in_flight) : DASH, 'in_flight', 'num'),
    cell(capacity == null ? '∞' : String(capacity), 'max_concurrent', 'num of'), loadMeter,
    cell(fixed(hour.p50_ms, 1), 'p50_ms', 'num'), cell(fixed(hour.p99_ms, 1), 'p99_ms', 'num'),
    cell(pct(hour.error_rate), 'error_rate', 'num'), cell(pct(hour.share_of_traffic), 'share', 'num'),
    cell(fixed(today.cost, 4), 'spend', 'num'), cell(budget == null ? DASH : budget.toFixed(4), 'budget', 'num of'), spendMeter);
  return tr;
}

// ---------- scaling signals (the router signals; it never owns instances)

const SCALING_SIGN = { scale_out: '>', scale_in: '<' }; // the direction the metric must pass the threshold

const count = (v) => (isNum(v) ? String(v) : DASH);

// "91.50 > 80": value, sign and threshold in three cells (the sign carries no data-field).
function scalingRow(entry) {
  const tr = el('tr');
  tr.dataset.scaling = entry.entry;

  const action = cell(null, 'action');
  action.append(el('span', `badge action-${entry.action}`, text(entry.action)));

  const metric = cell(text(entry.metric));
  const value = cell(fixed(entry.value, 2), 'value', 'num');
  if (entry.value == null && entry.unreadable) {
    value.title = String(entry.unreadable);
    metric.append(Object.assign(el('span', 'muted small unreadable', 'unreadable: ' + entry.unreadable), { title: String(entry.unreadable) }));
  }
  const sign = cell(SCALING_SIGN[entry.action] || '?', null, 'cmp muted');
  const threshold = cell(isNum(entry.threshold) ? String(entry.threshold) : DASH, 'threshold');

  const active = cell(null, 'active');
  active.append(el('span', `badge ${entry.active ? 'scaling-active' : 'scaling-idle'}`, entry.active ? 'active' : 'idle'));

  const at = entry.last_signal_at ? new Date(entry.last_signal_at) : null;
  const last = cell(at ? clock(at) : DASH, null, 'mono');
  if (entry.last_signal_at) last.title = String(entry.last_signal_at);

  tr.append(cell(text(entry.entry), null, 'mono'), cell(text(entry.node)), action, metric,
    value, sign, threshold, active, cell(count(entry.signals), 'signals', 'num'), last);
  return tr;
}

// Hidden when the config has no usable autoscaling entries.
function renderScaling(status) {
  const entries = Array.isArray(status.scaling) ? status.scaling : [];
  document.getElementById('scaling').hidden = entries.length === 0;
  document.getElementById('scaling-rows').replaceChildren(...entries.map(scalingRow));
  const hooks = status.scaling_webhooks || {};
  byField('webhooks_sent').textContent = count(hooks.sent);
  byField('webhooks_failed').textContent = count(hooks.failed);
  byField('webhooks_failed').classList.toggle('failed', hooks.failed > 0);
}

// ---------- charts (uPlot)

const charts = {};   // name -> { key, plot }; key changes (e.g. node set) force a rebuild
const history = [];  // [{ t: seconds, nodes: { id: { in_flight, p50, p99 } } }]
let routingCounts = []; // per type, un-stacked counts, for the routing legend

const chartBox = (name) => document.querySelector(`.chart[data-chart="${name}"]`);
const chartWidth = (box) => Math.max(200, box.clientWidth || 300);

// Integer-only tick steps for count axes.
const INT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6];
const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];

function drawChart(name, key, makeOpts, data) {
  const box = chartBox(name);
  try {
    let chart = charts[name];
    if (chart && chart.key !== key) { chart.plot.destroy(); chart = null; }
    if (chart) { chart.plot.setData(data); return; }
    if (typeof uPlot !== 'function') throw new Error('uPlot did not load');
    box.replaceChildren();
    const opts = Object.assign(makeOpts(), { width: chartWidth(box), height: CHART_HEIGHT });
    charts[name] = { key, plot: new uPlot(opts, data, box) };
  } catch (err) {
    delete charts[name];
    box.replaceChildren(el('p', 'chart-error', 'Chart unavailable: ' + err.message));
  }
}

// Stacked bars: series i holds the cumulative sum of types 0..i, and band {series: [i+1, i]}
// makes uPlot.paths.bars draw series i+1 from series i's value up (see bars() in uPlot source).
function drawRouting(status, nodes, types) {
  const now = status.now_ms / 1000;
  const xs = Array.from({ length: 12 }, (_, k) => now - (11 - k) * 300); // slot k ends at now - (11-k)*5min
  routingCounts = types.map((type) => {
    const counts = new Array(12).fill(0);
    for (const n of nodes.filter((n) => String(n.type) === type)) {
      const slots = ((n.last_hour && n.last_hour.served_per_5min) || []).slice(-12);
      slots.forEach((v, k) => { counts[12 - slots.length + k] += Number(v) || 0; }); // last slot = now
    }
    return counts;
  });
  const stacked = [];
  routingCounts.forEach((counts, i) => stacked.push(counts.map((v, k) => v + (i ? stacked[i - 1][k] : 0))));

  drawChart('routing', types.join(','), () => ({
    scales: { x: { time: true, range: (u, min, max) => [min - 150, max + 150] }, y: { range: fromZero } },
    bands: types.slice(1).map((_, i) => ({ series: [i + 2, i + 1] })),
    series: [
      { label: '5 min until', value: (u, v) => (v == null ? DASH : hhmm(v)) },
      ...types.map((type, i) => ({
        label: type,
        fill: TYPE_COLORS[type] || PALETTE[(i + 4) % PALETTE.length],
        stroke: TYPE_COLORS[type] || PALETTE[(i + 4) % PALETTE.length],
        width: 0,
        paths: uPlot.paths.bars({ size: [0.7, 48] }),
        points: { show: false },
        value: (u, v, si, idx) => (idx == null ? DASH : String(routingCounts[si - 1][idx])),
      })),
    ],
    axes: [
      {
        // one tick per slot end, thinned on narrow charts, always keeping the current slot
        splits: (u) => { const step = u.width < 450 ? 3 : u.width < 700 ? 2 : 1; return u.data[0].filter((_, k) => (11 - k) % step === 0); },
        values: (u, splits) => splits.map(hhmm),
      },
      { incrs: INT_INCRS, size: 40 },
    ],
  }), [xs, ...stacked]);
}

// Line chart of one value per node (or two, for latency) over the sampled history.
function drawHistory(name, nodes, metrics, integers) {
  const xs = history.map((h) => h.t);
  const series = [{ label: 'time', value: (u, v) => (v == null ? DASH : clock(new Date(v * 1000))) }];
  const data = [xs];
  nodes.forEach((node, i) => {
    for (const [metric, dash] of metrics) {
      series.push({
        label: metrics.length > 1 ? `${node.id} ${metric}` : String(node.id),
        stroke: PALETTE[i % PALETTE.length], width: 1.5, dash,
        value: (u, v) => (v == null ? DASH : integers ? String(v) : v.toFixed(1)),
      });
      data.push(history.map((h) => { const s = h.nodes[node.id]; return s && isNum(s[metric]) ? s[metric] : null; }));
    }
  });
  drawChart(name, nodes.map((n) => n.id).join('\n'), () => ({
    scales: { x: { time: true, range: (u, min, max) => (max - min < 10 ? [max - 10, max] : [min, max]) }, y: { range: fromZero } },
    series,
    axes: [
      { space: 70, values: (u, splits) => splits.map((v) => clock(new Date(v * 1000))) },
      { size: 44, incrs: integers ? INT_INCRS : undefined },
    ],
  }), data);
}

// Sampled with the browser clock: only the spacing matters here, and it stays monotonic.
function recordHistory(nodes) {
  const t = Date.now() / 1000;
  const last = history[history.length - 1];
  if (last && t <= last.t) return; // x must be strictly increasing
  const sample = { t, nodes: {} };
  for (const n of nodes) {
    const hour = n.last_hour || {};
    sample.nodes[n.id] = { in_flight: n.in_flight, p50: hour.p50_ms, p99: hour.p99_ms };
  }
  history.push(sample);
  while (history[0].t < t - HISTORY_S) history.shift();
}

function drawCharts(status) {
  const nodes = status.nodes || [];
  recordHistory(nodes);
  drawRouting(status, nodes, nodeTypes(nodes));
  drawHistory('in_flight', nodes, [['in_flight', undefined]], true);
  drawHistory('latency', nodes, [['p50', undefined], ['p99', [5, 4]]], false);
}

let resizeQueued = false;
window.addEventListener('resize', () => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    for (const [name, chart] of Object.entries(charts)) {
      chart.plot.setSize({ width: chartWidth(chartBox(name)), height: CHART_HEIGHT });
    }
  });
});

// ---------- status polling

function render(status) {
  renderHeader(status);
  renderTiles(status);
  const nodes = status.nodes || [];
  document.getElementById('nodes').replaceChildren(...nodes.map((n, i) => nodeRow(n, PALETTE[i % PALETTE.length])));
  renderScaling(status);
  document.body.dataset.loaded = '1';
  document.body.dataset.statusNowMs = String(status.now_ms);
  drawCharts(status); // each chart catches its own failures
}

async function pollStatus() {
  try {
    const res = checkResponse(await fetch('/dashboard/api/status', FETCH_OPTS));
    render(await res.json());
    setError('status', null);
  } catch (err) {
    setError('status', err);
  } finally {
    setTimeout(pollStatus, POLL_MS);
  }
}

// ---------- routing log

const logBody = document.getElementById('routing-log');
const shownIds = new Set(); // request ids in the table, to skip duplicates after a reconnect

function logRow(rec) {
  const tr = el('tr');
  if (rec.request_id != null) tr.dataset.requestId = rec.request_id;
  const time = cell(clock(new Date(rec.time), true), null, 'mono');
  time.title = text(rec.time);
  const id = cell(text(rec.request_id), null, 'mono');
  id.title = `${text(rec.method)} ${text(rec.path)} · ${text(rec.attempts)} attempt(s)`;
  const model = rec.requested_model && rec.served_model && rec.requested_model !== rec.served_model
    ? `${rec.requested_model} → ${rec.served_model}` : text(rec.served_model || rec.requested_model);
  const failed = !isNum(rec.status) || rec.status >= 400;
  const outcome = rec.outcome && rec.outcome !== 'complete' ? ' ' + rec.outcome : '';
  const tokens = cell(`${text(rec.tokens_in)} / ${text(rec.tokens_out)}`, null, 'num');
  tokens.title = `cost ${fixed(rec.cost, 4)}`;
  tr.append(
    time, id, cell(text(rec.tenant)), cell(text(rec.country)), cell(text(rec.rule)), cell(text(rec.node)),
    cell(model, null, 'model'),
    cell(text(rec.status) + outcome, null, 'num ' + (failed ? 'bad' : 'good')),
    cell(text(rec.cache), null, 'cache-' + String(rec.cache).toLowerCase()),
    tokens,
    cell(`${text(rec.ttfb_ms)} / ${text(rec.duration_ms)}`, null, 'num'),
    cell(rec.refusal == null ? '' : String(rec.refusal), null, 'bad'),
  );
  return tr;
}

function addLogLine(line) {
  if (!line.trim()) return;
  let rec;
  try { rec = JSON.parse(line); } catch { return; } // ignore a malformed line
  if (!rec || typeof rec !== 'object') return;
  let row;
  if (isNum(rec.missed) && !('request_id' in rec)) {
    row = el('tr', 'missed');
    row.append(cell(`${rec.missed} record(s) skipped (the log outran this page)`));
    row.firstChild.colSpan = 12;
  } else {
    if (rec.request_id != null && shownIds.has(rec.request_id)) return;
    if (rec.request_id != null) shownIds.add(rec.request_id);
    row = logRow(rec);
  }
  logBody.prepend(row);
  while (logBody.rows.length > LOG_ROWS) {
    shownIds.delete(logBody.lastElementChild.dataset.requestId);
    logBody.lastElementChild.remove();
  }
}

// Latest records first (sent oldest first; reversed if the server sends newest first), then the live stream.
async function followLog() {
  const state = document.getElementById('log-state');
  try {
    const recent = await (checkResponse(await fetch('/dashboard/api/routing-log?recent=1', FETCH_OPTS))).text();
    const lines = recent.split('\n').filter((l) => l.trim());
    const timeOf = (l) => { try { return JSON.parse(l).time || ''; } catch { return ''; } };
    if (lines.length > 1 && timeOf(lines[0]) > timeOf(lines[lines.length - 1])) lines.reverse();
    lines.forEach(addLogLine);

    const res = checkResponse(await fetch('/dashboard/api/routing-log', FETCH_OPTS));
    setError('log', null);
    state.textContent = '· live';
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let partial = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const lines = (partial + decoder.decode(value, { stream: true })).split('\n');
      partial = lines.pop(); // keep an incomplete last line for the next chunk
      lines.forEach(addLogLine);
    }
    addLogLine(partial + decoder.decode());
    state.textContent = '· stream ended, reconnecting';
  } catch (err) {
    state.textContent = '· disconnected';
    setError('log', err);
  }
  setTimeout(followLog, RECONNECT_MS);
}

pollStatus();
followLog();
