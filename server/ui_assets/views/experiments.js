// Experiments: name search, run counts and last activity, rename / delete / restore, show deleted.
import {MLFLOW, get, post} from '../api.js';
import {clear, errorBox, fmtTime, h, route} from '../dom.js';

const PAGE = 100;

async function load(search, showDeleted) {
  const body = {max_results: PAGE, view_type: showDeleted ? 'ALL' : 'ACTIVE_ONLY'};
  if (search) body.filter = `name ILIKE '%${search.replaceAll("'", "''")}%'`;
  const experiments = (await post(`${MLFLOW}/experiments/search`, body)).experiments || [];
  const ids = experiments.map((e) => e.experiment_id);
  const activity = ids.length ? (await get('/api/ts/experiments/activity', {experiment_id: ids})).experiments : [];
  const byId = new Map(activity.map((a) => [a.experiment_id, a]));
  return experiments.map((e) => ({...e, activity: byId.get(e.experiment_id) || {runs: 0, running: 0}}));
}

function row(e, refresh) {
  const deleted = e.lifecycle_stage === 'deleted';
  const act = async (path, body) => {
    try { await post(`${MLFLOW}/experiments/${path}`, body); await refresh(); } catch (err) { alert(err.message); }
  };
  const rename = () => {
    const name = prompt('New name', e.name);
    if (name && name !== e.name) act('update', {experiment_id: e.experiment_id, new_name: name});
  };
  return h('tr', {class: deleted ? 'deleted' : null, 'data-experiment': e.experiment_id},
    h('td', null, h('a', {href: route('experiments', e.experiment_id), class: 'exp-name'}, e.name)),
    h('td', {class: 'num'}, e.experiment_id),
    h('td', {class: 'num'}, String(e.activity.runs), e.activity.running ? h('span', {class: 'muted'}, ` (${e.activity.running} running)`) : null),
    h('td', null, fmtTime(e.activity.last_activity || e.last_update_time)),
    h('td', {class: 'actions'},
      h('button', {onclick: rename}, 'Rename'),
      deleted ? h('button', {onclick: () => act('restore', {experiment_id: e.experiment_id})}, 'Restore')
        : h('button', {onclick: () => confirm(`Delete experiment “${e.name}”?`) && act('delete', {experiment_id: e.experiment_id})}, 'Delete')));
}

export async function experimentsView() {
  const search = h('input', {type: 'search', placeholder: 'Search by name', id: 'experiment-search'});
  const showDeleted = h('input', {type: 'checkbox', id: 'show-deleted'});
  const tbody = h('tbody');
  const status = h('div');
  const refresh = async () => {
    try {
      const experiments = await load(search.value.trim(), showDeleted.checked);
      clear(status);
      clear(tbody).append(...experiments.map((e) => row(e, refresh)));
      if (!experiments.length) tbody.append(h('tr', null, h('td', {colspan: 5, class: 'muted'}, 'No experiments')));
    } catch (error) {
      clear(status).append(errorBox(error));
    }
  };
  let timer = null;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(refresh, 200); });
  showDeleted.addEventListener('change', refresh);
  await refresh();
  const el = h('section', null,
    h('h1', null, 'Experiments'),
    h('div', {class: 'toolbar'}, search, h('label', null, showDeleted, ' show deleted')),
    status,
    h('table', {class: 'grid', id: 'experiments'},
      h('thead', null, h('tr', null, ['Name', 'ID', 'Runs', 'Last activity', ''].map((t) => h('th', null, t)))),
      tbody));
  return {el, title: 'Experiments', stop: () => clearTimeout(timer)};
}
