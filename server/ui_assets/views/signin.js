// Sign-in (auth on): the server checks the password and sets an HttpOnly, SameSite=Strict cookie.
import {post} from '../api.js';
import {clear, errorBox, h} from '../dom.js';

export function signInView(done) {
  const user = h('input', {id: 'signin-user', autocomplete: 'username', required: true});
  const password = h('input', {id: 'signin-password', type: 'password', autocomplete: 'current-password', required: true});
  const message = h('div');
  const form = h('form', {class: 'signin', id: 'signin'},
    h('h1', null, 'Sign in'),
    h('label', null, 'User ', user), h('label', null, 'Password ', password),
    h('button', {type: 'submit'}, 'Sign in'), message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await post('/api/ts/session', {username: user.value, password: password.value});
      view.signIn = false;
      done();
    } catch (error) {
      clear(message).append(errorBox(error));
    }
  });
  const view = {el: form, title: 'Sign in', signIn: true};
  return view;
}
