// Inline preview of an artifact, always as inert content: text into a text node, CSV into table cells
// (textContent), images (SVG included) through <img> from a blob URL, where script never runs.
import {clear, errorBox, h} from './dom.js';

export const MAX_PREVIEW_BYTES = 1_000_000;
const TEXT = new Set(['txt', 'log', 'md', 'json', 'yaml', 'yml', 'csv', 'tsv', 'py', 'toml', 'cfg', 'ini', 'html', 'xml', 'svg']);
const IMAGE = {png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', svg: 'image/svg+xml'};

export function kindOf(name) {
  const ext = name.includes('.') ? name.split('.').pop().toLowerCase() : '';
  if (ext in IMAGE) return {kind: 'image', type: IMAGE[ext]};
  if (ext === 'csv' || ext === 'tsv') return {kind: 'table', sep: ext === 'csv' ? ',' : '\t'};
  if (ext === 'json') return {kind: 'json'};
  if (TEXT.has(ext) || name === 'MLmodel') return {kind: 'text'}; // a logged model's YAML descriptor
  return {kind: 'none'};
}

/** Minimal CSV: quoted fields with "" escapes; enough to show the first rows. */
export function parseCsv(text, sep = ',', maxRows = 200) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === sep) { row.push(field); field = ''; }
    else if (c === '\n') { row.push(field.replace(/\r$/, '')); rows.push(row); row = []; field = ''; }
    else field += c;
  }
  if ((field || row.length) && rows.length < maxRows) { row.push(field); rows.push(row); }
  return rows;
}

export async function previewArtifact(into, url, name, size) {
  const what = kindOf(name);
  clear(into).append(h('h3', null, name));
  if (what.kind === 'none') { into.append(h('p', {class: 'muted'}, 'No preview for this type; use download.')); return; }
  if (size > MAX_PREVIEW_BYTES && what.kind !== 'image') {
    into.append(h('p', {class: 'muted'}, `Too large to preview (${size} bytes); use download.`));
    return;
  }
  try {
    const response = await fetch(url, {credentials: 'same-origin'});
    if (!response.ok) throw new Error(`download failed: HTTP ${response.status}`);
    if (what.kind === 'image') {
      const blob = new Blob([await response.arrayBuffer()], {type: what.type});
      into.append(h('img', {src: URL.createObjectURL(blob), alt: name, class: 'preview-image'}));
      return;
    }
    let text = await response.text();
    if (what.kind === 'table') {
      const rows = parseCsv(text, what.sep);
      into.append(h('table', {class: 'grid csv'}, rows.map((r, i) => h('tr', null, r.map((c) => h(i ? 'td' : 'th', null, c))))));
      return;
    }
    if (what.kind === 'json') { try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as is */ } }
    into.append(h('pre', {class: 'preview-text'}, text));
  } catch (error) {
    into.append(errorBox(error));
  }
}
