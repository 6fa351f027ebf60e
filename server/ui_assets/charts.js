// One chart per metric key, for one run or overlaid across runs, drawn by uPlot on a canvas.
// Data comes from the downsampling route (min / max / last per step bucket), so a 10M-point series
// arrives as ~1,000 buckets; the min/max band keeps spikes visible at any zoom. Zooming (drag a
// range) fetches finer buckets for the visible steps; double-click zooms back out.
import uPlot from './vendor/uPlot.esm.js';
import {tsGet} from './api.js';
import {fmtNumber, h} from './dom.js';

export const BUCKETS = 1000;
const painted = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];

/** Exponential moving average of ``values`` (nulls kept as gaps), debiased like TensorBoard's. */
export function ema(values, weight) {
  const out = new Array(values.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i += 1) {
    const v = values[i];
    if (v == null || !Number.isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    n += 1;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

export async function fetchBuckets(runId, key, range) {
  const params = {buckets: BUCKETS};
  if (range) { params.step_min = Math.floor(range[0]); params.step_max = Math.ceil(range[1]); }
  const path = `/api/ts/runs/${encodeURIComponent(runId)}/metrics/${key.split('/').map(encodeURIComponent).join('/')}`;
  return (await tsGet(path, params)).history;
}

/** The full history, page after page (the route answers in capped pages with a next_page_token). */
async function fetchTimes(runId, key) {
  const path = `/api/ts/runs/${encodeURIComponent(runId)}/metrics/${key.split('/').map(encodeURIComponent).join('/')}`;
  const pages = {step: [], timestamp_ms: [], value: []};
  let token = null;
  do {
    const page = await tsGet(path, token ? {page_token: token} : {});
    for (const name of Object.keys(pages)) pages[name].push(page.history[name]);
    token = page.next_page_token;
  } while (token);
  // joined once at the end: concatenating page by page would copy the history once per page
  return Object.fromEntries(Object.entries(pages).map(([name, chunks]) => [name, chunks.flat()]));
}

/** uPlot tables [x, min, max, line] for each run, joined on x. */
function table(history, xMode, times) {
  if (xMode === 'step' || !times) {
    const x = history.step_max.map((hi, i) => (history.step_min[i] + hi) / 2);
    return [x, history.min, history.max, history.last];
  }
  const t0 = times.timestamp_ms.length ? times.timestamp_ms[0] : 0;
  const x = times.timestamp_ms.map((t) => (xMode === 'wall' ? t / 1000 : (t - t0) / 1000));
  return [x, times.value, times.value, times.value];
}

/**
 * A live chart of ``key`` for ``runs`` ([{run_id, name}]).
 * Returns {el, refresh(), destroy(), state}; ``refresh`` re-fetches the visible range (used for live runs).
 */
export function metricChart(key, runs, options = {}) {
  const state = {xMode: 'step', log: false, smooth: false, range: null, histories: [], times: [], fetches: 0};
  const holder = h('div', {class: 'chart-canvas'});
  const xSelect = h('select', {'aria-label': 'x axis'},
    h('option', {value: 'step'}, 'step'), h('option', {value: 'wall'}, 'wall time'),
    h('option', {value: 'relative'}, 'relative time'));
  const logBox = h('input', {type: 'checkbox', class: 'log-y'});
  const smoothBox = h('input', {type: 'checkbox', class: 'ema'});
  const note = h('span', {class: 'muted chart-note'});
  const el = h('figure', {class: 'chart', 'data-key': key},
    h('figcaption', null, h('strong', null, key), ' ',
      h('label', null, 'x ', xSelect), h('label', null, logBox, ' log y'), h('label', null, smoothBox, ' EMA'), note),
    holder);
  let plot = null;

  const seriesSpec = () => [{label: state.xMode === 'step' ? 'step' : 'seconds'}, ...runs.flatMap((r, i) => {
    const color = COLORS[i % COLORS.length];
    const name = runs.length > 1 ? `${r.name}` : key;
    return [
      {label: `${name} min`, stroke: 'transparent', points: {show: false}, value: (u, v) => (v == null ? '' : fmtNumber(v))},
      {label: `${name} max`, stroke: 'transparent', points: {show: false}, value: (u, v) => (v == null ? '' : fmtNumber(v))},
      {label: name, stroke: color, width: 1.5, spanGaps: true, points: {show: fewPoints()},
        value: (u, v) => (v == null ? '' : fmtNumber(v))},
    ];
  })];

  // A handful of buckets (a single logged value, say) would be an invisible line: mark the points.
  const fewPoints = () => state.histories.every((hist) => hist.step_min.length <= 20);
  const bands = () => runs.map((r, i) => ({series: [2 + 3 * i, 1 + 3 * i], fill: `${COLORS[i % COLORS.length]}55`}));

  const data = () => {
    const tables = state.histories.map((hist, i) => {
      const t = table(hist, state.xMode, state.times[i]);
      return state.smooth ? [t[0], t[1], t[2], ema(t[3], 0.9)] : t;
    });
    if (tables.length === 1) return tables[0];
    return uPlot.join(tables);
  };

  const build = () => {
    if (plot) plot.destroy();
    const width = Math.max(300, (holder.clientWidth || options.width || 640));
    plot = new uPlot({
      width, height: options.height || 260, series: seriesSpec(), bands: bands(),
      scales: {x: {time: state.xMode === 'wall'}, y: {distr: state.log ? 3 : 1}},
      cursor: {drag: {x: true, y: false}},
      hooks: {setSelect: [(u) => {
        if (u.select.width < 2) return;
        const lo = u.posToVal(u.select.left, 'x');
        const hi = u.posToVal(u.select.left + u.select.width, 'x');
        u.setSelect({left: 0, width: 0}, false);
        zoom([lo, hi]);
      }]},
    }, data(), holder);
    plot.over.addEventListener('dblclick', () => zoom(null));
  };

  const fetchAll = async () => {
    state.fetches += 1;
    state.histories = await Promise.all(runs.map((r) => fetchBuckets(r.run_id, key,
      state.xMode === 'step' ? state.range : null)));
    if (state.xMode !== 'step') {
      const counts = state.histories.map((hist) => hist.points.reduce((a, b) => a + b, 0));
      if (Math.max(...counts) > 200000) {
        note.textContent = ' time axes need ≤ 200,000 points per run; showing steps';
        state.times = [];
      } else {
        note.textContent = '';
        state.times = await Promise.all(runs.map((r) => fetchTimes(r.run_id, key)));
      }
    }
  };

  const redraw = () => {
    if (!plot) { build(); return; }
    plot.setData(data(), !state.range);
    if (state.range && state.xMode === 'step') plot.setScale('x', {min: state.range[0], max: state.range[1]});
  };

  const pointCount = () => state.histories.reduce((sum, hist) => sum + hist.points.reduce((a, b) => a + b, 0), 0);

  // Timings for the benchmark (benchmarks/bench_ui.py) ride on data- attributes: request -> fetched
  // -> drawn (the next animation frame after uPlot's draw).
  /** Fetch finer buckets for ``range`` (steps; null = everything) and redraw: the zoom round trip. */
  const zoom = async (range) => {
    state.range = range && state.xMode === 'step' ? range : null;
    const started = performance.now();
    await fetchAll();
    redraw();
    await painted();
    el.dataset.zoomMs = (performance.now() - started).toFixed(1);
    el.dataset.range = state.range ? state.range.map(Math.round).join(',') : '';
    el.dataset.zooms = String(Number(el.dataset.zooms || 0) + 1);
    el.dataset.points = String(pointCount());
  };

  xSelect.addEventListener('change', async () => { state.xMode = xSelect.value; state.range = null; await fetchAll(); build(); });
  logBox.addEventListener('change', () => { state.log = logBox.checked; build(); });
  smoothBox.addEventListener('change', () => { state.smooth = smoothBox.checked; redraw(); });

  const ready = (async () => {
    await fetchAll();
    const fetched = performance.now();
    build();
    await painted();
    el.dataset.drawMs = (performance.now() - fetched).toFixed(1);
    el.dataset.points = String(pointCount());
  })();
  const refresh = async () => {
    await fetchAll();
    redraw();
    el.dataset.points = String(pointCount());
  };
  return {el, ready, refresh, zoom, state, destroy: () => plot && plot.destroy(), plot: () => plot};
}
