// Building DOM without HTML strings: every user-controlled value becomes a text node or an attribute
// set through setAttribute, never markup. Links may only point inside the app or at this server's API.

/** h('a', {href: '#/x', class: 'c', onclick: fn}, 'text', child) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'href') el.setAttribute('href', safeHref(value));
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Only in-app hash routes and same-server API paths; anything else (javascript:, data:, other hosts) is dropped. */
export function safeHref(value) {
  const s = String(value);
  return /^#\//.test(s) || /^\/api\//.test(s) ? s : '#/';
}

export function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function fmtTime(ms) {
  if (ms == null || ms === '' || Number(ms) <= 0) return '';
  return new Date(Number(ms)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtDuration(start, end) {
  if (!start) return '';
  const seconds = Math.max(0, ((end ? Number(end) : Date.now()) - Number(start)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function fmtNumber(v) {
  if (typeof v !== 'number') return String(v);
  return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, '');
}

export function statusBadge(status) {
  const s = String(status || 'UNKNOWN');
  return h('span', {class: `badge badge-${s.toLowerCase().replace(/[^a-z]/g, '')}`}, s);
}

/** A Key / Value table (extra header cells for extra columns); 'none' when there are no rows. */
export function kvTable(id, rows, extraHead = []) {
  return h('table', {class: 'grid kv', id},
    h('thead', null, h('tr', null, h('th', null, 'Key'), h('th', null, 'Value'), extraHead.map((t) => h('th', null, t)))),
    h('tbody', null, rows.length ? rows : h('tr', null, h('td', {colspan: 2 + extraHead.length, class: 'muted'}, 'none'))));
}

export function errorBox(error) {
  return h('div', {class: 'error', role: 'alert'}, error && error.message ? error.message : String(error));
}
