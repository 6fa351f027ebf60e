// Ingest: per-partition lag, points/s and recent rejects with their reasons (trackstream's own routes).
import {get} from '../api.js';
import {clear, errorBox, fmtTime, h} from '../dom.js';

function flatten(value, prefix = '') {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
  }
  return [[prefix, Array.isArray(value) ? JSON.stringify(value) : String(value)]];
}

export async function ingestView() {
  const statusBox = h('div', {id: 'ingest-status'});
  const rejectsBox = h('div', {id: 'rejects'});
  const refresh = async () => {
    try {
      const status = await get('/api/ts/status');
      clear(statusBox).append(h('table', {class: 'grid kv'}, h('tbody', null,
        flatten(status).map(([k, v]) => h('tr', null, h('td', null, k), h('td', {class: 'num'}, v))))));
    } catch (error) { clear(statusBox).append(errorBox(error)); }
    try {
      const rejects = (await get('/api/ts/rejects', {limit: 50})).rejects;
      const cols = rejects.length ? Object.keys(rejects[0]) : [];
      clear(rejectsBox).append(rejects.length ? h('table', {class: 'grid'},
        h('thead', null, h('tr', null, cols.map((c) => h('th', null, c)))),
        h('tbody', null, rejects.map((r) => h('tr', null, cols.map((c) =>
          h('td', null, /_ms$|time/.test(c) && typeof r[c] === 'number' ? fmtTime(r[c]) : String(r[c] ?? ''))))))) :
        h('p', {class: 'muted'}, 'No rejects'));
    } catch (error) { clear(rejectsBox).append(errorBox(error)); }
  };
  await refresh();
  const timer = setInterval(refresh, 2000);
  const el = h('section', null, h('h1', null, 'Ingest'), h('h2', null, 'Status (lag, throughput)'), statusBox,
    h('h2', null, 'Recent rejects'), rejectsBox);
  return {el, title: 'Ingest', stop: () => clearInterval(timer)};
}
