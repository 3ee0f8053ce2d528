// count's dashboard: reads /api/v1/totals and draws what it answers. No
// library: the chart is a few SVG bars, and time zones are the browser's
// own (Intl), so the page needs nothing but this server.
'use strict';

/** The range presets, in minutes; the URL keeps the key. */
const RANGES = { '15m': 15, '1h': 60, '6h': 360, '24h': 1440, '7d': 10080, '30d': 43200, '365d': 525600 };
const DEFAULT_RANGE = '24h';
/** How often a live view reads again. */
const REFRESH_MS = 5000;
/** How many endpoints the top list shows. */
const TOP = 10;
const MINUTE = 60000;
const DAY = 1440 * MINUTE;
/** Older than this, a range is not read by minute: the minute tier keeps
 *  35 days by default (count.tiers), so 30 leaves a margin. */
const MINUTES_KEPT = 30 * DAY;

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();
const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** The view: what the filters and the URL say. */
const view = { range: DEFAULT_RANGE, from: '', to: '', tz: browserZone, method: '', prefix: '', tenant: '' };
/** The order statuses are listed in, by class (count.status_class). */
const STATUS_CLASSES = ['2xx', '3xx', '4xx', '5xx', '1xx', 'grpc_ok', 'grpc_error', 'unknown'];
/** The classes counted as server errors. */
const SERVER_ERRORS = ['5xx', 'grpc_error'];
let live = true;
let timer = null;
/** Bumped by every read: an answer to an older read is dropped. */
let generation = 0;

// ---------------------------------------------------------------- time zones

const partsFormats = new Map();
/** The wall-clock fields of instant `ms` in zone `tz`. */
function wall(ms, tz) {
  let format = partsFormats.get(tz);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    partsFormats.set(tz, format);
  }
  const p = {};
  for (const { type, value } of format.formatToParts(new Date(ms))) p[type] = Number(value);
  return { year: p.year, month: p.month, day: p.day, hour: p.hour, minute: p.minute, second: p.second };
}

/** The zone's offset from UTC at instant `ms`, in milliseconds. */
function offset(ms, tz) {
  const w = wall(ms, tz);
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) - Math.floor(ms / 1000) * 1000;
}

/** The instant whose wall clock in `tz` reads these fields (out-of-range
 *  fields carry over, as Date.UTC's do), by PostgreSQL's rule: a wall time
 *  the clock shows twice is the later instant, and one it skips (a DST
 *  gap) is read with the offset from before the change, which is also the
 *  later of the two readings. */
function instant(tz, year, month, day = 1, hour = 0, minute = 0) {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute);
  // The offsets a day either side: a wall time maps with one of them.
  const readings = [offset(asUtc - 86400000, tz), offset(asUtc + 86400000, tz)].map((o) => asUtc - o);
  const shown = readings.filter((ms) => ms + offset(ms, tz) === asUtc);
  return Math.max(...(shown.length ? shown : readings));
}

/** The start of the bucket of `granularity` holding instant `ms` in `tz`,
 *  as PostgreSQL's `date_trunc(unit, t, zone)` labels it: a minute or an
 *  hour keeps t's own offset (so an hour the clock repeats is two
 *  buckets), a day or month starts at its local midnight. */
function bucketStart(ms, granularity, tz) {
  const w = wall(ms, tz);
  switch (granularity) {
    case 'minute': return Math.floor(ms / MINUTE) * MINUTE;
    case 'hour': return Math.floor(ms / 1000) * 1000 - (w.minute * 60 + w.second) * 1000;
    case 'day': return instant(tz, w.year, w.month, w.day);
    default: return instant(tz, w.year, w.month);
  }
}

/** Every bucket of period `p` in `tz`, as `count.buckets` lists them:
 *  minutes and hours as the labels of the minutes or quarter-hours in the
 *  period (every zone's offset is whole quarter-hours, Lord Howe's
 *  30-minute DST included), days and months from one local midnight to
 *  the next. */
function bucketList(p, tz) {
  const list = [];
  if (p.granularity === 'minute' || p.granularity === 'hour') {
    const step = p.granularity === 'minute' ? MINUTE : 15 * MINUTE;
    for (let q = p.start; q < p.end; q = Math.floor(q / step) * step + step) {
      const bucket = bucketStart(q, p.granularity, tz);
      if (list[list.length - 1] !== bucket) list.push(bucket);
    }
    return list;
  }
  for (let t = bucketStart(p.start, p.granularity, tz); t < p.end;) {
    list.push(t);
    const w = wall(t, tz);
    const next = p.granularity === 'day' ? instant(tz, w.year, w.month, w.day + 1) : instant(tz, w.year, w.month + 1);
    t = Math.max(next, t + MINUTE);
  }
  return list;
}

/** The bucket size that gives a readable number of bars for a range. */
function granularityFor(minutes) {
  if (minutes <= 360) return 'minute';
  if (minutes <= 8 * 1440) return 'hour';
  if (minutes <= 92 * 1440) return 'day';
  return 'month';
}

/** The view's [start, end) in milliseconds and its granularity. A preset
 *  ends after the current minute and starts on a bucket boundary, so that
 *  its first bar is whole. A custom range is taken as given, but where it
 *  is older than the minute tier keeps, its ends are read to the
 *  quarter-hour, and not by minute. */
function period() {
  if (view.range === 'custom') {
    let start = instant(view.tz, ...fields(view.from));
    let end = instant(view.tz, ...fields(view.to));
    let granularity = granularityFor((end - start) / MINUTE);
    const old = Date.now() - MINUTES_KEPT;
    const quarter = (ms) => Math.floor(ms / (15 * MINUTE)) * 15 * MINUTE;
    if (start < old) {
      start = quarter(start);
      if (granularity === 'minute') granularity = 'hour';
    }
    if (end < old) end = quarter(end);
    return { start, end, granularity };
  }
  const minutes = RANGES[view.range];
  const granularity = granularityFor(minutes);
  const end = Math.floor(Date.now() / MINUTE) * MINUTE + MINUTE;
  return { start: bucketStart(end - minutes * MINUTE, granularity, view.tz), end, granularity };
}

/** A datetime-local value's fields. */
function fields(text) {
  const [date, time = '00:00'] = text.split('T');
  const [year, month, day] = date.split('-').map(Number);
  const [hour, minute] = time.split(':').map(Number);
  return [year, month, day, hour, minute];
}

/** Instant `ms` as a datetime-local value in `tz`. */
function localInput(ms, tz) {
  const w = wall(ms, tz);
  const two = (n) => String(n).padStart(2, '0');
  return `${w.year}-${two(w.month)}-${two(w.day)}T${two(w.hour)}:${two(w.minute)}`;
}

function label(ms, granularity, tz) {
  const options = { timeZone: tz };
  if (granularity === 'month') Object.assign(options, { year: 'numeric', month: 'short' });
  else if (granularity === 'day') Object.assign(options, { month: 'short', day: 'numeric' });
  else Object.assign(options, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  return new Intl.DateTimeFormat(undefined, options).format(new Date(ms));
}

// ---------------------------------------------------------------- reading

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    const names = (error.fields || []).map((f) => f.field).join(', ');
    super((error.message || `HTTP ${status}`) + (names ? ` (${names})` : ''));
    this.status = status;
  }
}

async function getJson(url, options) {
  const response = await fetch(url, { credentials: 'same-origin', ...options });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** `GET /api/v1/totals` for the view's filters plus `extra`. */
function totals(p, extra) {
  const query = new URLSearchParams({
    start_time: new Date(p.start).toISOString(),
    end_time: new Date(p.end).toISOString(),
    time_zone: view.tz,
    ...extra,
  });
  if (view.method && !('methods' in extra)) query.set('methods', view.method);
  if (view.prefix && !('path' in extra)) query.set('path_prefix', view.prefix);
  if (view.tenant) query.set('tenants', view.tenant);
  // URLSearchParams writes a space as '+', which the API keeps as a plus.
  return getJson('/api/v1/totals?' + query.toString().replaceAll('+', '%20'));
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  let p;
  try {
    p = period();
    if (!(p.end > p.start)) throw new Error('the range must end after it starts');
    const [series, top, statuses] = await Promise.all([
      totals(p, { granularity: p.granularity }),
      totals(p, { granularity: 'total', group_by: 'endpoint', top: String(TOP) }),
      totals(p, { granularity: 'total', group_by: 'status_class' }),
    ]);
    const trends = await Promise.all(top.totals.map((row) =>
      totals(p, { granularity: p.granularity, methods: row.method, path: row.path })));
    if (mine !== generation) return;
    render(p, series, top.totals, trends.map((t) => t.totals), statuses.totals);
    $('error').textContent = '';
  } catch (error) {
    if (mine !== generation) return;
    if (error.status === 401) return showLogin();
    $('error').textContent = error.message;
    $('status').textContent = 'Not updated';
  }
  if (live && view.range !== 'custom') timer = setTimeout(tick, REFRESH_MS);
}

function tick() {
  if (document.hidden) timer = setTimeout(tick, REFRESH_MS);
  else refresh();
}

// ---------------------------------------------------------------- drawing

const SVG = 'http://www.w3.org/2000/svg';
function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

/** Every bucket of the period (zeros included), with the answer's totals. */
function buckets(p, rows) {
  const byTime = new Map();
  for (const row of rows) byTime.set(Date.parse(row.bucket), row.total);
  const all = new Map(bucketList(p, view.tz).map((t) => [t, 0]));
  for (const [t, total] of byTime) {
    // Never expected (the list is count.buckets'); shown rather than lost.
    if (!all.has(t)) console.warn(`a bucket the page did not expect: ${new Date(t).toISOString()}`);
    all.set(t, total);
  }
  return [...all.entries()].sort((a, b) => a[0] - b[0]);
}

function render(p, series, top, trends, statuses) {
  const points = buckets(p, series.totals);
  const sum = points.reduce((s, [, total]) => s + total, 0);
  const total = $('total');
  total.value = numbers.format(sum);
  // The period read, for a reader (or a test) to ask the same question.
  Object.assign(total.dataset, {
    total: String(sum), start: new Date(p.start).toISOString(), end: new Date(p.end).toISOString(),
    granularity: p.granularity, timeZone: view.tz,
  });
  $('range-text').textContent = `${label(p.start, 'minute', view.tz)} – ${label(p.end, 'minute', view.tz)} (${view.tz}), per ${p.granularity}`;
  const [peakAt, peak] = points.reduce((best, point) => (point[1] > best[1] ? point : best), [p.start, 0]);
  $('peak').textContent = peak > 0 ? `${numbers.format(peak)} per ${p.granularity}, ${label(peakAt, p.granularity, view.tz)}` : '–';
  $('average').textContent = `${numbers.format(Math.round(sum / Math.max(1, points.length)))} per ${p.granularity}`;
  $('endpoints').textContent = top.length < TOP ? numbers.format(top.length) : `${TOP} or more`;
  drawChart(points, p.granularity);
  drawTable(points, p.granularity);
  drawTop(top, sum, trends, p);
  drawStatuses(statuses, sum);
  const asOf = new Date(series.as_of);
  $('status').textContent = `${live && view.range !== 'custom' ? 'Live · ' : ''}complete as of ${asOf.toLocaleTimeString(undefined, { timeZone: view.tz })}`;
  document.body.dataset.state = 'ready';
}

/** The last chart drawn, to draw again at a new width. */
let lastChart = null;

/** Bars in the chart's own pixel width, so that its labels are never
 *  stretched. */
function drawChart(points, granularity) {
  lastChart = [points, granularity];
  const chart = $('chart');
  // The style sheet sizes the chart; the drawing fills it.
  const width = Math.max(200, chart.clientWidth), height = Math.max(100, chart.clientHeight), left = 48, bottom = 22;
  const max = Math.max(1, ...points.map(([, total]) => total));
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Requests per ${granularity}, highest ${numbers.format(max)}`,
  });
  svg('line', { class: 'axis', x1: left, x2: width, y1: height - bottom, y2: height - bottom }, root);
  svg('line', { class: 'axis', x1: left, x2: width, y1: 4, y2: 4 }, root);
  svg('text', { x: left - 6, y: 12, 'text-anchor': 'end' }, root).textContent = numbers.format(max);
  svg('text', { x: left - 6, y: height - bottom, 'text-anchor': 'end' }, root).textContent = '0';
  const step = (width - left) / Math.max(1, points.length);
  const gap = step > 4 ? Math.min(2, step * 0.15) : 0;
  points.forEach(([t, total], i) => {
    const h = (total / max) * (height - bottom - 4);
    const name = `${label(t, granularity, view.tz)}: ${numbers.format(total)} requests`;
    const bar = svg('rect', {
      class: 'bar-rect', x: left + i * step + gap / 2, y: height - bottom - h,
      width: Math.max(0.5, step - gap), height: h, 'aria-label': name,
      'data-bucket': new Date(t).toISOString(), 'data-total': total,
    }, root);
    svg('title', {}, bar).textContent = name;
  });
  const ticks = points.length > 2 && width > 500 ? [0, Math.floor(points.length / 2), points.length - 1]
    : points.length > 1 ? [0, points.length - 1] : [0];
  for (const i of ticks) {
    const anchor = i === 0 ? 'start' : i === points.length - 1 ? 'end' : 'middle';
    const x = i === points.length - 1 ? width : left + i * step + (i === 0 ? 0 : step / 2);
    svg('text', { x, y: height - 6, 'text-anchor': anchor }, root).textContent = label(points[i][0], granularity, view.tz);
  }
  chart.replaceChildren(root);
}

function drawTable(points, granularity) {
  const body = $('series').tBodies[0];
  body.replaceChildren(...points.filter(([, total]) => total > 0).map(([t, total]) => {
    const row = document.createElement('tr');
    row.append(cell(label(t, granularity, view.tz)), cell(numbers.format(total), 'num'));
    return row;
  }));
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function drawTop(rows, sum, trends, p) {
  const body = $('top').tBodies[0];
  body.replaceChildren(...rows.map((row, i) => {
    const tr = document.createElement('tr');
    tr.dataset.method = row.method;
    tr.dataset.path = row.path;
    tr.dataset.total = String(row.total);
    const trendCell = cell('', 'trend');
    trendCell.append(sparkline(buckets(p, trends[i]), row));
    tr.append(cell(row.method), cell(row.path, 'path'), cell(numbers.format(row.total), 'num'),
      shareCell(sum > 0 ? row.total / sum : 0), trendCell);
    return tr;
  }));
  $('top-empty').hidden = rows.length > 0;
}

/** The requests by status class, with their share; server errors in the
 *  summary. Clients that send no status count as unknown. */
function drawStatuses(rows, sum) {
  const order = (row) => STATUS_CLASSES.indexOf(row.status_class);
  const sorted = [...rows].sort((a, b) => order(a) - order(b));
  const body = $('statuses').tBodies[0];
  body.replaceChildren(...sorted.map((row) => {
    const tr = document.createElement('tr');
    tr.dataset.statusClass = row.status_class;
    tr.dataset.total = String(row.total);
    tr.className = `status-${row.status_class}`;
    tr.append(cell(row.status_class), cell(numbers.format(row.total), 'num'), shareCell(sum > 0 ? row.total / sum : 0));
    return tr;
  }));
  const errors = rows.filter((row) => SERVER_ERRORS.includes(row.status_class)).reduce((s, row) => s + row.total, 0);
  const known = rows.some((row) => row.status_class !== 'unknown');
  $('errors').textContent = known ? `${(sum > 0 ? (errors / sum) * 100 : 0).toFixed(1)}% (${numbers.format(errors)})` : '–';
  $('statuses-empty').hidden = rows.length > 0;
}

/** A cell with a bar and the percentage of `share` (0 to 1). */
function shareCell(share) {
  const td = cell('');
  const box = document.createElement('div');
  box.className = 'share';
  const bar = svg('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', 'aria-hidden': 'true' }, box);
  svg('rect', { class: 'track', width: 100, height: 10, rx: 3 }, bar);
  svg('rect', { class: 'fill', width: (share * 100).toFixed(2), height: 10, rx: 3 }, bar);
  box.append(`${(share * 100).toFixed(1)}%`);
  td.append(box);
  return td;
}

function sparkline(points, row) {
  const max = Math.max(1, ...points.map(([, total]) => total));
  const step = 100 / Math.max(1, points.length - 1);
  const line = svg('svg', {
    viewBox: '0 0 100 24', preserveAspectRatio: 'none', role: 'img',
    'aria-label': `Trend of ${row.method} ${row.path}`,
  });
  svg('polyline', {
    points: points.map(([, total], i) => `${(i * step).toFixed(2)},${(22 - (total / max) * 20).toFixed(2)}`).join(' '),
    'vector-effect': 'non-scaling-stroke',
  }, line);
  return line;
}

// ---------------------------------------------------------------- the view and the URL

function readUrl() {
  const query = new URLSearchParams(location.search);
  const range = query.get('range');
  view.range = Object.hasOwn(RANGES, range) || range === 'custom' ? range : DEFAULT_RANGE;
  view.from = query.get('from') || '';
  view.to = query.get('to') || '';
  if (view.range === 'custom' && !(view.from && view.to)) view.range = DEFAULT_RANGE;
  view.tz = query.get('tz') || browserZone;
  view.method = query.get('method') || '';
  view.prefix = query.get('prefix') || '';
  view.tenant = query.get('tenant') || '';
}

function writeUrl() {
  const query = new URLSearchParams();
  if (view.range !== DEFAULT_RANGE) query.set('range', view.range);
  if (view.range === 'custom') { query.set('from', view.from); query.set('to', view.to); }
  // A custom range's times are wall times in its zone: always named.
  if (view.tz !== browserZone || view.range === 'custom') query.set('tz', view.tz);
  if (view.method) query.set('method', view.method);
  if (view.prefix) query.set('prefix', view.prefix);
  if (view.tenant) query.set('tenant', view.tenant);
  const search = query.toString();
  history.replaceState(null, '', search ? `?${search}` : location.pathname);
}

function showView() {
  $('range').value = view.range;
  $('from').value = view.from;
  $('to').value = view.to;
  $('tz').value = view.tz;
  $('method').value = view.method;
  $('prefix').value = view.prefix;
  $('tenant').value = view.tenant;
  $('filters').classList.toggle('custom-range', view.range === 'custom');
  $('live').disabled = view.range === 'custom';
}

function takeFilters() {
  const range = $('range').value;
  if (range === 'custom' && view.range !== 'custom') {
    // Start from what the preset showed.
    const p = period();
    view.from = localInput(p.start, view.tz);
    view.to = localInput(p.end, view.tz);
  } else if (range === 'custom') {
    view.from = $('from').value;
    view.to = $('to').value;
  }
  view.range = range;
  view.tz = $('tz').value.trim() || browserZone;
  view.method = $('method').value;
  view.prefix = $('prefix').value.trim();
  view.tenant = $('tenant').value.trim();
  showView();
  writeUrl();
  refresh();
}

// ---------------------------------------------------------------- session

async function showLogin() {
  clearTimeout(timer);
  // A read under way must not draw, nor read again, once logged out.
  generation += 1;
  $('dashboard').hidden = true;
  $('live').hidden = true;
  $('logout').hidden = true;
  $('status').textContent = '';
  $('login').hidden = false;
  $('token').focus();
}

async function logIn(event) {
  event.preventDefault();
  try {
    await getJson('/api/v1/session', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: $('token').value }),
    });
    $('token').value = '';
    $('login-error').textContent = '';
    start();
  } catch (error) {
    $('login-error').textContent = error.message;
  }
}

async function logOut() {
  await fetch('/api/v1/session', { method: 'DELETE', credentials: 'same-origin' });
  showLogin();
}

async function start() {
  let session;
  try {
    session = await getJson('/api/v1/session');
  } catch (error) {
    $('status').textContent = error.message;
    return;
  }
  if (session.login_required && !session.authenticated) return showLogin();
  $('logout').hidden = !session.login_required;
  $('live').hidden = false;
  const wasLogin = !$('login').hidden;
  $('login').hidden = true;
  $('dashboard').hidden = false;
  if (wasLogin) $('range').focus();
  showView();
  refresh();
}

document.addEventListener('DOMContentLoaded', () => {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  $('zones').replaceChildren(...['UTC', ...zones].map((zone) => {
    const option = document.createElement('option');
    option.value = zone;
    return option;
  }));
  readUrl();
  $('filters').addEventListener('submit', (event) => { event.preventDefault(); takeFilters(); });
  for (const id of ['range', 'method', 'tz', 'prefix', 'from', 'to']) $(id).addEventListener('change', takeFilters);
  $('live').addEventListener('click', () => {
    live = !live;
    $('live').setAttribute('aria-pressed', String(live));
    refresh();
  });
  $('login').addEventListener('submit', logIn);
  $('logout').addEventListener('click', logOut);
  new ResizeObserver(() => { if (lastChart) drawChart(...lastChart); }).observe($('chart'));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && live && !$('dashboard').hidden) refresh();
  });
  start();
});
