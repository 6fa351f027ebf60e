// A run: params, tags (set and delete), latest metrics with charts, provenance, artifacts with
// download and safe preview, parent and children links, and its lifecycle.
import {MLFLOW, artifactUrl, get, getAsOf, post, tsGet} from '../api.js';
import {append, clear, errorBox, fmtDuration, fmtNumber, fmtTime, h, kvTable, route, statusBadge} from '../dom.js';
import {metricChart} from '../charts.js';
import {artifactBrowser} from '../artifacts.js';
import {loggedModelsSection} from './models.js';

const LIVE_MS = 1000;
const PROVENANCE = [
  ['mlflow.source.git.commit', 'git commit'], ['mlflow.source.git.dirty', 'git dirty'],
  ['mlflow.source.name', 'source'], ['mlflow.source.type', 'source type'], ['trackstream.host', 'host'],
  ['mlflow.user', 'user'], ['trackstream.python', 'python'], ['trackstream.packages', 'packages'],
];

function runArtifacts(run) {
  const list = async (path) => (await get(`${MLFLOW}/artifacts/list`, {run_id: run.info.run_id, path: path || undefined})).files || [];
  return artifactBrowser(list, (path) => artifactUrl(run, path), {tree: 'artifacts', preview: 'artifact-preview'});
}

function tagEditor(run, refresh) {
  const key = h('input', {placeholder: 'tag key', id: 'tag-key'});
  const value = h('input', {placeholder: 'value', id: 'tag-value'});
  const message = h('span');
  const save = h('button', {id: 'tag-save'}, 'Set tag');
  save.addEventListener('click', async () => {
    try {
      await post(`${MLFLOW}/runs/set-tag`, {run_id: run.info.run_id, key: key.value, value: value.value});
      await refresh();
    } catch (error) { clear(message).append(errorBox(error)); }
  });
  return h('div', {class: 'toolbar'}, key, value, save, message);
}

export async function runView(experimentId, runId) {
  const el = h('section', {class: 'run'});
  let charts = [];
  let timer = null;
  const historic = getAsOf() != null;

  const load = async () => {
    const run = historic ? mlflowShaped((await tsGet(`/api/ts/runs/${encodeURIComponent(runId)}`)).run)
      : (await get(`${MLFLOW}/runs/get`, {run_id: runId})).run;
    const [ts, events] = await Promise.all([
      historic ? null : tsGet(`/api/ts/runs/${encodeURIComponent(runId)}`).then((r) => r.run).catch(() => null),
      tsGet(`/api/ts/runs/${encodeURIComponent(runId)}/lifecycle`).then((r) => r.events).catch(() => [])]);
    return {run, ts, events};
  };

  const render = async () => {
    const {run, ts, events} = await load();
    const info = run.info;
    if (ts && ts.status) info.status = ts.status; // FINALIZING, which MLflow's API reports as RUNNING
    const tags = Object.fromEntries((run.data.tags || []).map((t) => [t.key, t.value]));
    const parent = tags['mlflow.parentRunId'];
    const children = historic ? [] : ((await post(`${MLFLOW}/runs/search`, {experiment_ids: [info.experiment_id],
      filter: `tags.mlflow.parentRunId = '${runId.replaceAll("'", "''")}'`, max_results: 100})).runs || []);
    const deleteTag = (k) => async () => {
      try { await post(`${MLFLOW}/runs/delete-tag`, {run_id: runId, key: k}); await rerender(); }
      catch (error) { alert(error.message); }
    };
    const metrics = run.data.metrics || [];
    charts.forEach((c) => c.destroy());
    charts = metrics.map((m) => metricChart(m.key, [{run_id: runId, name: info.run_name || runId}]));
    const lifecycle = h('div', {id: 'lifecycle'},
      h('p', null, statusBadge(info.status), ` started ${fmtTime(info.start_time)}`,
        info.end_time ? ` · ended ${fmtTime(info.end_time)}` : '', ` · ${fmtDuration(info.start_time, info.end_time)}`),
      ts && ts.missing_artifacts && ts.missing_artifacts.length ? h('div', {class: 'warn', id: 'missing-artifacts'},
        'Waiting for manifest artifacts: ', h('ul', null, ts.missing_artifacts.map((a) => h('li', null, a)))) : null,
      events.length ? h('details', {id: 'events'}, h('summary', null, `Lifecycle (${events.length} events from the log)`),
        h('table', {class: 'grid'}, h('tbody', null, events.map((e) => h('tr', {'data-event': e.event_type},
          h('td', null, fmtTime(e.logged_ms || e.timestamp_ms)), h('td', null, e.event_type),
          h('td', null, Array.isArray(e.detail) ? `manifest: ${e.detail.join(', ')}` : e.detail ?? '')))))) : null);
    append(clear(el), [
      h('p', {class: 'crumbs'}, h('a', {href: '#/'}, 'Experiments'), ' / ',
        h('a', {href: route('experiments', info.experiment_id)}, `experiment ${info.experiment_id}`), ' /'),
      h('h1', {id: 'run-title'}, info.run_name || runId),
      h('p', {class: 'muted'}, `run ${runId}`),
      lifecycle,
      parent ? h('p', {id: 'parent'}, 'Parent: ', h('a', {href: route('experiments', info.experiment_id, 'runs', parent)}, parent)) : null,
      children.length ? h('div', {id: 'children'}, 'Children: ', children.map((c) =>
        h('a', {href: route('experiments', info.experiment_id, 'runs', c.info.run_id), class: 'child-link'}, c.info.run_name || c.info.run_id))) : null,
      h('h2', null, 'Charts'),
      h('div', {class: 'charts', id: 'charts'}, charts.length ? charts.map((c) => c.el) : h('p', {class: 'muted'}, 'No metrics')),
      h('div', {class: 'columns'},
        h('div', null, h('h2', null, 'Latest metrics'), kvTable('metrics', metrics.map((m) =>
          h('tr', null, h('td', null, m.key), h('td', {class: 'num'}, fmtNumber(m.value)), h('td', {class: 'num'}, String(m.step)))), ['Step']),
        h('h2', null, 'Params'), kvTable('params', (run.data.params || []).map((p) =>
          h('tr', null, h('td', null, p.key), h('td', null, p.value))))),
        h('div', null, h('h2', null, 'Provenance'), kvTable('provenance', PROVENANCE.filter(([k]) => k in tags).map(([k, label]) =>
          h('tr', null, h('td', null, label), h('td', null, tags[k])))),
        h('h2', null, 'Tags'), historic ? null : tagEditor(run, rerender), kvTable('tags', Object.entries(tags).map(([k, v]) =>
          h('tr', null, h('td', null, k), h('td', null, v), h('td', null, historic ? null : h('button', {class: 'tag-delete', 'data-key': k, onclick: deleteTag(k)}, 'Delete')))), [''])),
      ),
      h('h2', null, 'Artifacts'), historic ? h('p', {class: 'muted'}, 'not shown for a past moment') : runArtifacts(run),
      h('h2', null, 'Logged models'), historic ? h('p', {class: 'muted'}, 'not shown for a past moment') : loggedModelsSection(run),
    ]);
    await Promise.all(charts.map((c) => c.ready.catch(() => null)));
    return run;
  };

  const rerender = async () => {
    try { schedule(await render()); } catch (error) { clear(el).append(errorBox(error)); }
  };

  // Live: while RUNNING, poll the visible charts so new points appear within ~1 s of being materialized.
  const schedule = (run) => {
    clearTimeout(timer);
    if (historic || run.info.status !== 'RUNNING') return;
    timer = setTimeout(async function tick() {
      await Promise.all(charts.map((c) => c.refresh().catch(() => null)));
      timer = setTimeout(tick, LIVE_MS);
    }, LIVE_MS);
  };

  schedule(await render());
  return {el, title: runId, stop: () => { clearTimeout(timer); charts.forEach((c) => c.destroy()); }};
}

function mlflowShaped(tsRun) {
  return {info: {...tsRun}, data: {
    params: Object.entries(tsRun.params || {}).map(([key, value]) => ({key, value})),
    tags: Object.entries(tsRun.tags || {}).map(([key, value]) => ({key, value})),
    metrics: Object.entries(tsRun.metrics || {}).map(([key, m]) => ({key, ...m})),
  }};
}
