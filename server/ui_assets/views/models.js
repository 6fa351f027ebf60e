// A run's logged models (MLflow 3 LoggedModel): the models the run outputs and the models naming it as
// their source run, with status, type, params, tags and metrics, and their files once READY.
import {MLFLOW, artifactUrl, get, post} from '../api.js';
import {append, clear, errorBox, fmtNumber, fmtTime, h, kvTable, statusBadge} from '../dom.js';
import {artifactBrowser} from '../artifacts.js';

const MAX_MODELS = 100;

/** MLflow's enum names -> the badge: LOGGED_MODEL_READY -> READY, LOGGED_MODEL_UPLOAD_FAILED -> FAILED. */
export function modelStatus(status) {
  const s = String(status || 'UNKNOWN').replace(/^LOGGED_MODEL_/, '');
  return s === 'UPLOAD_FAILED' ? 'FAILED' : s;
}

function quoted(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}

/** The run's models: those whose source run it is (one search), plus model outputs logged from elsewhere. */
async function runModels(run) {
  const found = (await post(`${MLFLOW}/logged-models/search`, {experiment_ids: [run.info.experiment_id],
    filter: `source_run_id = ${quoted(run.info.run_id)}`, max_results: MAX_MODELS})).models || [];
  const seen = new Set(found.map((m) => m.info.model_id));
  const others = ((run.outputs || {}).model_outputs || []).map((o) => o.model_id).filter((id) => !seen.has(id));
  const fetched = await Promise.all([...new Set(others)].map((id) =>
    get(`${MLFLOW}/logged-models/${encodeURIComponent(id)}`).then((r) => r.model).catch(() => null)));
  return [...found, ...fetched.filter(Boolean)];
}

function pairs(items) {
  return (items || []).map((p) => h('tr', null, h('td', null, p.key), h('td', null, p.value)));
}

function modelFiles(model, status) {
  if (status !== 'READY') {
    const why = model.info.status_message ? `: ${model.info.status_message}` : '';
    return h('p', {class: 'muted model-not-ready'}, `Files are not available: the model is ${status}, not READY${why}.`);
  }
  const id = encodeURIComponent(model.info.model_id);
  const list = async (path) => (await get(`${MLFLOW}/logged-models/${id}/artifacts/directories`,
    {artifact_directory_path: path || undefined})).files || [];
  return artifactBrowser(list, (path) => artifactUrl(model, path));
}

function modelCard(model) {
  const info = model.info;
  const data = model.data || {};
  const status = modelStatus(info.status);
  const metrics = (data.metrics || []).map((m) => h('tr', null, h('td', null, m.key), h('td', {class: 'num'}, fmtNumber(m.value)),
    h('td', {class: 'num'}, String(m.step ?? '')), h('td', null, m.dataset_name || '')));
  return h('div', {class: 'model', 'data-model': info.model_id},
    h('h3', null, h('span', {class: 'model-name'}, info.name || info.model_id), ' ', statusBadge(status)),
    h('p', {class: 'muted model-meta'}, `model ${info.model_id}`, info.model_type ? ` · type ${info.model_type}` : '',
      ` · created ${fmtTime(info.creation_timestamp_ms)}`),
    h('div', {class: 'columns'},
      h('div', null, h('h4', null, 'Params'), h('div', {class: 'model-params'}, kvTable(null, pairs(data.params))),
        h('h4', null, 'Metrics'), h('div', {class: 'model-metrics'}, kvTable(null, metrics, ['Step', 'Dataset']))),
      h('div', null, h('h4', null, 'Tags'), h('div', {class: 'model-tags'}, kvTable(null, pairs(info.tags))))),
    h('h4', null, 'Files'), modelFiles(model, status));
}

export function loggedModelsSection(run) {
  const el = h('div', {id: 'logged-models'}, h('p', {class: 'muted'}, 'Loading…'));
  runModels(run).then((models) => append(clear(el), [models.length ? models.map(modelCard)
    : h('p', {class: 'muted'}, 'No logged models')])).catch((error) => clear(el).append(errorBox(error)));
  return el;
}
