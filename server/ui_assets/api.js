// The UI's only data path: the MLflow REST routes any client uses, and trackstream's /api/ts routes.

export const MLFLOW = '/api/2.0/mlflow';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let asOf = null; // Unix ms, or null for now

export function setAsOf(ms) { asOf = ms; }
export function getAsOf() { return asOf; }

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v == null) continue;
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, String(item));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function request(method, path, body) {
  // The marker header tells the server to answer 401 without a basic-auth challenge (our form signs in).
  const init = {method, credentials: 'same-origin', headers: {'X-Trackstream-UI': '1'}};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) window.dispatchEvent(new CustomEvent('ts-unauthenticated'));
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = {message: text}; }
  if (!response.ok) throw new ApiError(response.status, data.error_code, data.message || response.statusText);
  return data;
}

export const get = (path, params) => request('GET', path + query(params));
export const post = (path, body) => request('POST', path, body);
/** trackstream's reads, with the as-of moment when one is picked. */
export const tsGet = (path, params) => get(path, {...params, as_of: asOf == null ? null : String(asOf)});

export function artifactUrl(run, path) {
  // mlflow-artifacts:/<exp>/<run>/artifacts -> the artifact proxy's download route
  const root = String(run.info.artifact_uri || '').replace(/^mlflow-artifacts:\/?/, '');
  const parts = `${root}/${path}`.split('/').filter(Boolean).map(encodeURIComponent);
  return `/api/2.0/mlflow-artifacts/artifacts/${parts.join('/')}`;
}
