// One artifact browser for a run's files and a logged model's files: a lazily expanded tree, download
// links and the shared inline preview (preview.js). Where the files come from is passed in.
import {clear, errorBox, h} from './dom.js';
import {previewArtifact} from './preview.js';

/**
 * list(path) -> MLflow ListArtifacts files ([{path relative to the root, is_dir, file_size}]);
 * url(path) -> the download URL of one file. ids (optional) names the tree and preview elements.
 */
export function artifactBrowser(list, url, ids = {}) {
  const preview = h('div', {class: 'preview artifact-preview', id: ids.preview});
  const show = async (path, into) => {
    const files = await list(path);
    clear(into).append(files.length ? h('ul', {class: 'tree'}, files.map((f) => {
      const name = f.path.split('/').pop();
      if (f.is_dir) {
        const sub = h('div');
        const toggle = h('button', {class: 'link dir', 'data-path': f.path}, `${name}/`);
        toggle.addEventListener('click', () => (sub.childElementCount ? clear(sub)
          : show(f.path, sub).catch((error) => clear(sub).append(errorBox(error)))));
        return h('li', null, toggle, sub);
      }
      const open = h('button', {class: 'link file', 'data-path': f.path}, name);
      open.addEventListener('click', () => previewArtifact(preview, url(f.path), name, f.file_size));
      return h('li', null, open, ' ', h('span', {class: 'muted'}, `${f.file_size ?? ''} B `),
        h('a', {href: url(f.path), download: name, class: 'download'}, 'download'));
    })) : h('p', {class: 'muted'}, 'No artifacts'));
  };
  const tree = h('div', {class: 'artifact-tree', id: ids.tree});
  show('', tree).catch((error) => clear(tree).append(errorBox(error)));
  return h('div', {class: 'artifacts'}, tree, preview);
}
