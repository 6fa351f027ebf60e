// Hash router: the links the mlflow client prints (#/experiments/<id>/runs/<run>) land here.
import {clear, errorBox, h} from './dom.js';
import {setAsOf} from './api.js';
import {experimentsView} from './views/experiments.js';
import {runsView} from './views/runs.js';
import {runView} from './views/run.js';
import {compareView} from './views/compare.js';
import {ingestView} from './views/ingest.js';
import {sqlView} from './views/sql.js';
import {signInView} from './views/signin.js';

const ROUTES = [
  [/^#?\/?$/, () => experimentsView()],
  [/^#\/experiments\/([^/?]+)\/runs\/([^/?]+)\/?$/, (m) => runView(m[1], m[2])],
  [/^#\/experiments\/([^/?]+)\/?$/, (m) => runsView(m[1])],
  [/^#\/compare\?(.*)$/, (m) => compareView(new URLSearchParams(m[1]).getAll('run'))],
  [/^#\/ingest\/?$/, () => ingestView()],
  [/^#\/sql\/?$/, () => sqlView()],
];

let current = null; // the view shown, so its timers stop when we leave it

export function match(hash) {
  for (const [pattern, make] of ROUTES) {
    const m = pattern.exec(hash);
    if (m) return () => make(m.map((part, i) => (i === 0 ? part : decodeURIComponent(part))));
  }
  return null;
}

async function render() {
  const main = document.getElementById('view');
  if (current && current.stop) current.stop();
  current = null;
  const make = match(location.hash || '#/');
  if (!make) {
    clear(main).append(errorBox(`No page at ${location.hash}`));
    return;
  }
  try {
    const view = await make();
    if (current && current.signIn) { if (view.stop) view.stop(); return; }
    current = view;
    clear(main).append(view.el);
    document.title = `trackstream · ${view.title || ''}`;
  } catch (error) {
    if (error.status === 401) return; // the sign-in form is up
    clear(main).append(errorBox(error));
  }
}

function initAsOf() {
  const input = document.getElementById('as-of');
  input.addEventListener('change', () => {
    setAsOf(input.value ? new Date(input.value + 'Z').getTime() : null);
    document.body.classList.toggle('historic', Boolean(input.value));
    render();
  });
}

// Auth is on and we have no session: show the sign-in form; after signing in, the page asked for.
window.addEventListener('ts-unauthenticated', () => {
  if (current && current.signIn) return;
  if (current && current.stop) current.stop();
  current = signInView(render);
  clear(document.getElementById('view')).append(current.el);
});
window.addEventListener('hashchange', render);
initAsOf();
render();
export {h};
