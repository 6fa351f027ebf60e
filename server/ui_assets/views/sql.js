// Admin SQL console over the ClickHouse tables (the read-only SQL route), with CSV download.
import {post} from '../api.js';
import {clear, errorBox, h} from '../dom.js';

export function toCsv(columns, rows) {
  const cell = (v) => {
    const s = v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns, ...rows].map((r) => r.map(cell).join(',')).join('\n') + '\n';
}

export async function sqlView() {
  const box = h('textarea', {id: 'sql-query', rows: 6, cols: 100, spellcheck: 'false'},
    'SELECT experiment_id, count() AS runs FROM runs_latest GROUP BY experiment_id');
  const out = h('div', {id: 'sql-result'});
  const download = h('a', {class: 'download', id: 'sql-csv', hidden: true}, 'Download CSV');
  const run = h('button', {id: 'sql-run'}, 'Run');
  run.addEventListener('click', async () => {
    try {
      const result = await post('/api/ts/sql', {query: box.value});
      const columns = result.columns || [];
      const rows = result.rows || [];
      clear(out).append(h('p', {class: 'muted'}, `${rows.length} rows`), h('table', {class: 'grid'},
        h('thead', null, h('tr', null, columns.map((c) => h('th', null, String(c))))),
        h('tbody', null, rows.slice(0, 1000).map((r) => h('tr', null, r.map((v) => h('td', null, v == null ? '' : String(v))))))));
      const blob = new Blob([toCsv(columns, rows)], {type: 'text/csv'});
      download.href = URL.createObjectURL(blob); // blob: URL of our own data, set on the property (not user input)
      download.download = 'query.csv';
      download.hidden = false;
    } catch (error) {
      clear(out).append(errorBox(error));
      download.hidden = true;
    }
  });
  const el = h('section', null, h('h1', null, 'SQL console'),
    h('p', {class: 'muted'}, 'Read-only queries over the ClickHouse tables (admins only when auth is on).'),
    box, h('div', {class: 'toolbar'}, run, download), out);
  return {el, title: 'SQL'};
}
