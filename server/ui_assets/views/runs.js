// Runs of an experiment: one server-side page at a time (never thousands of DOM rows), status badges,
// a column picker (params, latest metrics, tags), MLflow's filter grammar, sort by column, nested runs
// as a tree, and selection for the compare page.
import {MLFLOW, get, getAsOf, post, tsGet} from '../api.js';
import {clear, errorBox, fmtDuration, fmtNumber, fmtTime, h, route, statusBadge} from '../dom.js';

export const PAGE_SIZE = 50;
const MAX_OFF_PAGE_CHILDREN = 500;
const PARENT_TAG = 'mlflow.parentRunId';
const BASE_COLUMNS = [
  {id: 'name', label: 'Name', order: 'attributes.run_name'},
  {id: 'status', label: 'Status', order: 'attributes.status'},
  {id: 'start', label: 'Start', order: 'attributes.start_time'},
  {id: 'duration', label: 'Duration', order: null},
  {id: 'user', label: 'User', order: 'attributes.user_id'},
  {id: 'source', label: 'Source', order: null},
];

function tagMap(run) {
  return Object.fromEntries((run.data.tags || []).map((t) => [t.key, t.value]));
}

function quoteKey(key) {
  return '`' + key.replaceAll('`', '``') + '`';
}

/** Runs of one page ordered so children follow their parent (depth-first); depth says how far to indent. */
export function asTree(runs) {
  const byId = new Map(runs.map((r) => [r.info.run_id, r]));
  const children = new Map();
  const roots = [];
  for (const run of runs) {
    const parent = tagMap(run)[PARENT_TAG];
    if (parent && byId.has(parent) && parent !== run.info.run_id) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(run);
    } else roots.push(run);
  }
  const out = [];
  const seen = new Set();
  const walk = (run, depth) => {
    if (seen.has(run.info.run_id)) return;
    seen.add(run.info.run_id);
    out.push({run, depth, hasChildren: children.has(run.info.run_id)});
    for (const child of children.get(run.info.run_id) || []) walk(child, depth + 1);
  };
  roots.forEach((r) => walk(r, 0));
  runs.forEach((r) => walk(r, 0)); // cycles: never lose a run
  return out;
}

function cell(run, column, experimentId) {
  const info = run.info;
  const tags = tagMap(run);
  switch (column.id) {
    case 'name': return [h('a', {href: route('experiments', experimentId, 'runs', info.run_id), class: 'run-name'},
      info.run_name || info.run_id), run.parentElsewhere ? [' ', h('a', {class: 'parent-link muted',
      href: route('experiments', experimentId, 'runs', tags[PARENT_TAG]), title: `parent ${tags[PARENT_TAG]}`},
      '↖ parent (other page)')] : null, run.offPage ? h('span', {class: 'muted off-page'}, ' (other page)') : null];
    case 'status': return statusBadge(info.status);
    case 'start': return fmtTime(info.start_time);
    case 'duration': return fmtDuration(info.start_time, info.end_time);
    case 'user': return info.user_id || '';
    case 'source': return tags['mlflow.source.name'] || '';
    default: {
      const [kind, key] = [column.kind, column.key];
      if (kind === 'param') return ((run.data.params || []).find((p) => p.key === key) || {}).value ?? '';
      if (kind === 'metric') {
        const m = (run.data.metrics || []).find((x) => x.key === key);
        return m ? fmtNumber(m.value) : '';
      }
      return tags[key] ?? '';
    }
  }
}

/** Picker columns from the experiment's keys (``GET /api/ts/experiments/<id>/keys``); mlflow.* tags left out. */
export function pickerColumns(keys) {
  const kinds = [['param', keys.params, 'params', 'p'], ['metric', keys.metrics, 'metrics', 'm'],
    ['tag', (keys.tags || []).filter((k) => !k.startsWith('mlflow.')), 'tags', 't']];
  return kinds.flatMap(([kind, list, prefix, short]) => [...(list || [])].sort().map((key) => ({
    id: `${kind}:${key}`, kind, key, label: `${short}: ${key}`, order: `${prefix}.${quoteKey(key)}`,
  })));
}

/** MLflow's API reports FINALIZING as RUNNING (its clients know no FINALIZING); trackstream's run
 * route has the real status, asked only for the page's RUNNING runs. */
async function showFinalizing(runs) {
  await Promise.all(runs.filter((r) => r.info.status === 'RUNNING').map(async (r) => {
    try {
      r.info.status = (await tsGet(`/api/ts/runs/${encodeURIComponent(r.info.run_id)}`)).run.status || r.info.status;
    } catch { /* keep MLflow's answer */ }
  }));
}

/** runs/search takes trackstream's as_of (the runs as they were then, same filter and paging). */
function asOfParam() {
  return getAsOf() == null ? undefined : String(getAsOf());
}

/** Children of this page's runs that are on other pages (one search, under the same filter), so a
 * parent always shows its children; they are marked as coming from elsewhere. */
async function offPageChildren(experimentId, runs, filter) {
  if (!runs.length) return [];
  const ids = runs.map((r) => `'${r.info.run_id.replaceAll("'", "''")}'`).join(', ');
  const byParent = `tags.${PARENT_TAG} IN (${ids})`;
  const result = await post(`${MLFLOW}/runs/search`, {experiment_ids: [experimentId],
    filter: filter ? `${filter} AND ${byParent}` : byParent, max_results: MAX_OFF_PAGE_CHILDREN, as_of: asOfParam()});
  const onPage = new Set(runs.map((r) => r.info.run_id));
  return (result.runs || []).filter((r) => !onPage.has(r.info.run_id)).map((r) => ({...r, offPage: true}));
}

export async function runsView(experimentId) {
  const experimentRequest = get(`${MLFLOW}/experiments/get`, {experiment_id: experimentId}); // in parallel with the runs
  const storageKey = `ts.columns.${experimentId}`;
  const state = {filter: '', order: 'attributes.start_time DESC', tokens: [null], page: 0, selected: new Set(),
    extra: JSON.parse(localStorage.getItem(storageKey) || '[]'), collapsed: new Set(), runs: [], next: null};
  const filterInput = h('input', {type: 'search', id: 'run-filter', size: 60,
    placeholder: "MLflow filter, e.g. metrics.loss < 0.5 and params.lr = '0.01'"});
  const filterError = h('div', {id: 'filter-error'});
  const table = h('table', {class: 'grid', id: 'runs'});
  const pager = h('div', {class: 'pager'});
  const picker = h('details', {class: 'picker'});
  const compareButton = h('button', {id: 'compare', disabled: true}, 'Compare selected');
  compareButton.addEventListener('click', () => {
    location.hash = '#/compare?' + [...state.selected].map((id) => `run=${encodeURIComponent(id)}`).join('&');
  });

  const columns = () => [...BASE_COLUMNS, ...state.extra];

  const renderPicker = (keys) => {
    const available = pickerColumns(keys);
    const chosen = new Set(state.extra.map((c) => c.id));
    clear(picker).append(h('summary', null, 'Columns'), h('div', {class: 'picker-list'}, available.map((c) => {
      const box = h('input', {type: 'checkbox', checked: chosen.has(c.id), 'data-column': c.id});
      box.addEventListener('change', () => {
        state.extra = box.checked ? [...state.extra, c] : state.extra.filter((x) => x.id !== c.id);
        localStorage.setItem(storageKey, JSON.stringify(state.extra));
        renderTable();
      });
      return h('label', null, box, ' ', c.label);
    })));
  };

  const sortBy = (column) => {
    if (!column.order) return;
    state.order = state.order === `${column.order} ASC` ? `${column.order} DESC` : `${column.order} ASC`;
    state.tokens = [null];
    state.page = 0;
    load();
  };

  const renderTable = () => {
    const cols = columns();
    const head = h('tr', null, h('th', null, ''), cols.map((c) => {
      const arrow = state.order.startsWith(`${c.order} `) ? (state.order.endsWith('ASC') ? ' ▲' : ' ▼') : '';
      return h('th', {class: c.order ? 'sortable' : null, onclick: () => sortBy(c)}, c.label, arrow);
    }));
    const hidden = new Set();
    const rows = [];
    for (const {run, depth, hasChildren} of asTree(state.runs)) {
      const id = run.info.run_id;
      const parent = tagMap(run)[PARENT_TAG];
      if (parent && (hidden.has(parent) || state.collapsed.has(parent))) { hidden.add(id); continue; }
      const box = h('input', {type: 'checkbox', checked: state.selected.has(id), 'data-run': id});
      box.addEventListener('change', () => {
        if (box.checked) state.selected.add(id); else state.selected.delete(id);
        compareButton.disabled = state.selected.size < 1;
        compareButton.textContent = `Compare selected (${state.selected.size})`;
      });
      const toggle = hasChildren ? h('button', {class: 'twisty', onclick: () => {
        if (state.collapsed.has(id)) state.collapsed.delete(id); else state.collapsed.add(id);
        renderTable();
      }}, state.collapsed.has(id) ? '▸' : '▾') : h('span', {class: 'twisty-space'});
      rows.push(h('tr', {'data-run': id, class: depth ? 'child' : null}, h('td', null, box), cols.map((c, i) =>
        h('td', i === 0 ? {style: null, class: `depth-${Math.min(depth, 6)}`} : null,
          i === 0 ? [toggle, cell(run, c, experimentId)] : cell(run, c, experimentId)))));
    }
    clear(table).append(h('thead', null, head), h('tbody', null, rows.length ? rows
      : h('tr', null, h('td', {colspan: cols.length + 1, class: 'muted'}, 'No runs'))));
  };

  const renderPager = () => {
    const prev = h('button', {disabled: state.page === 0, id: 'prev-page'}, '‹ Prev');
    const next = h('button', {disabled: !state.next, id: 'next-page'}, 'Next ›');
    prev.addEventListener('click', () => { state.page -= 1; load(); });
    next.addEventListener('click', () => { state.tokens[state.page + 1] = state.next; state.page += 1; load(); });
    clear(pager).append(prev, h('span', {class: 'muted'}, ` page ${state.page + 1} · ${state.pageCount} runs `), next);
  };

  const load = async () => {
    try {
      const result = await post(`${MLFLOW}/runs/search`, {
        experiment_ids: [experimentId], filter: state.filter, order_by: [state.order], max_results: PAGE_SIZE,
        page_token: state.tokens[state.page] || undefined, as_of: asOfParam()});
      const page = result.runs || [];
      const children = await offPageChildren(experimentId, page, state.filter);
      const shown = new Set([...page, ...children].map((r) => r.info.run_id));
      page.forEach((r) => { r.parentElsewhere = Boolean(tagMap(r)[PARENT_TAG]) && !shown.has(tagMap(r)[PARENT_TAG]); });
      state.runs = [...page, ...children];
      state.pageCount = page.length;
      state.next = result.next_page_token || null;
      await showFinalizing(state.runs);
      clear(filterError);
      renderTable();
      renderPager();
    } catch (error) {
      clear(filterError).append(errorBox(error));
    }
  };

  filterInput.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    state.filter = filterInput.value.trim();
    state.tokens = [null];
    state.page = 0;
    load();
  });
  const keysRequest = get(`/api/ts/experiments/${encodeURIComponent(experimentId)}/keys`)
    .then(renderPicker).catch((error) => clear(picker).append(h('summary', null, 'Columns'), errorBox(error)));
  await load();
  await keysRequest;
  const experiment = (await experimentRequest).experiment;
  const el = h('section', null,
    h('p', {class: 'crumbs'}, h('a', {href: '#/'}, 'Experiments'), ' / '),
    h('h1', null, experiment.name),
    h('div', {class: 'toolbar'}, filterInput, picker, compareButton),
    filterError, table, pager);
  return {el, title: experiment.name};
}
