// Selected runs side by side: params and latest metrics with differences highlighted, charts overlaid.
import {MLFLOW, get} from '../api.js';
import {fmtNumber, h, route} from '../dom.js';
import {metricChart} from '../charts.js';

/** Rows of key -> value per run, with ``differs`` when the runs do not all agree. */
export function sideBySide(runs, pick) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(pick(r))))].sort();
  return keys.map((key) => {
    const values = runs.map((r) => pick(r)[key]);
    return {key, values, differs: new Set(values.map((v) => JSON.stringify(v ?? null))).size > 1};
  });
}

const params = (r) => Object.fromEntries((r.data.params || []).map((p) => [p.key, p.value]));
const metrics = (r) => Object.fromEntries((r.data.metrics || []).map((m) => [m.key, m.value]));

function table(id, runs, rows, format) {
  return h('table', {class: 'grid compare', id},
    h('thead', null, h('tr', null, h('th', null, 'Key'), runs.map((r) => h('th', null,
      h('a', {href: route('experiments', r.info.experiment_id, 'runs', r.info.run_id)}, r.info.run_name || r.info.run_id))))),
    h('tbody', null, rows.map((row) => h('tr', {class: row.differs ? 'differs' : null},
      h('td', null, row.key), row.values.map((v) => h('td', null, v == null ? '' : format(v)))))));
}

export async function compareView(runIds) {
  const runs = await Promise.all(runIds.map(async (id) => (await get(`${MLFLOW}/runs/get`, {run_id: id})).run));
  const keys = [...new Set(runs.flatMap((r) => (r.data.metrics || []).map((m) => m.key)))].sort();
  const named = runs.map((r) => ({run_id: r.info.run_id, name: r.info.run_name || r.info.run_id}));
  const charts = keys.map((key) => metricChart(key, named.filter((n, i) => key in metrics(runs[i]))));
  const el = h('section', {class: 'compare-page'},
    h('p', {class: 'crumbs'}, h('a', {href: '#/'}, 'Experiments'), runs.length ? [' / ',
      h('a', {href: route('experiments', runs[0].info.experiment_id)}, `experiment ${runs[0].info.experiment_id}`)] : null),
    h('h1', null, `Compare ${runs.length} runs`),
    h('h2', null, 'Params'), table('compare-params', runs, sideBySide(runs, params), String),
    h('h2', null, 'Latest metrics'), table('compare-metrics', runs, sideBySide(runs, metrics), fmtNumber),
    h('h2', null, 'Charts'), h('div', {class: 'charts', id: 'charts'}, charts.map((c) => c.el)));
  await Promise.all(charts.map((c) => c.ready.catch(() => null)));
  return {el, title: 'Compare', stop: () => charts.forEach((c) => c.destroy())};
}
