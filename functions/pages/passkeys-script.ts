/**
 * /passkeys.js: the one script our pages load (CSP `script-src 'self'`, no inline script). For
 * each `form[data-passkey]` it shows the form when the browser has WebAuthn, and on submit asks
 * `data-options` for the ceremony's options (POST, JSON, same origin; a form's `mfa_token` rides
 * along), runs navigator.credentials.create() or .get(), writes the answer as JSON into the
 * form's `credential` field and submits the form. Kept small and dependency-free on purpose.
 */
export const PASSKEYS_SCRIPT = `'use strict';
(function () {
  function toBytes(text) {
    var b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    var bin = atob(b64 + '==='.slice((b64.length + 3) % 4));
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }
  function toText(buffer) {
    var bytes = new Uint8Array(buffer), bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  }
  function descriptors(list) {
    return (list || []).map(function (d) { return { type: d.type, id: toBytes(d.id), transports: d.transports }; });
  }
  function creationOptions(o) {
    var user = { id: toBytes(o.user.id), name: o.user.name, displayName: o.user.displayName };
    return Object.assign({}, o, { challenge: toBytes(o.challenge), user: user, excludeCredentials: descriptors(o.excludeCredentials) });
  }
  function requestOptions(o) {
    return Object.assign({}, o, { challenge: toBytes(o.challenge), allowCredentials: descriptors(o.allowCredentials) });
  }
  function credentialJson(cred) {
    var r = cred.response, response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = typeof r.getTransports === 'function' ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return {
      id: cred.id, rawId: toText(cred.rawId), type: cred.type, response: response,
      authenticatorAttachment: cred.authenticatorAttachment || null,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {}
    };
  }
  function fail(form, text) {
    var status = form.querySelector('[data-passkey-status]');
    if (status) { status.textContent = text; status.hidden = false; }
    var button = form.querySelector('button[type=submit]');
    if (button) button.disabled = false;
  }
  function start(form) {
    var body = {}, token = form.querySelector('input[name=mfa_token]');
    if (token) body.mfa_token = token.value;
    var remember = form.querySelector('input[name=remember]');
    var box = document.querySelector('input[type=checkbox][name=remember]');
    if (remember && box) remember.value = box.checked ? '1' : '';
    return fetch(form.dataset.options, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().then(function (json) {
        if (!res.ok) throw new Error(json.detail || 'The server refused to start.');
        return json.options;
      });
    }).then(function (options) {
      return form.dataset.passkey === 'create'
        ? navigator.credentials.create({ publicKey: creationOptions(options) })
        : navigator.credentials.get({ publicKey: requestOptions(options) });
    }).then(function (cred) {
      if (!cred) throw new Error('No passkey was chosen.');
      form.querySelector('input[name=credential]').value = JSON.stringify(credentialJson(cred));
      form.submit();
    });
  }
  if (!window.PublicKeyCredential || !navigator.credentials) return;
  document.querySelectorAll('form[data-passkey]').forEach(function (form) {
    form.hidden = false;
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button[type=submit]');
      if (button) button.disabled = true;
      start(form).catch(function (error) {
        fail(form, error && error.name === 'NotAllowedError'
          ? 'The passkey prompt was closed or timed out. Try again.'
          : (error && error.message) || 'Passkeys did not work in this browser.');
      });
    });
  });
})();
`
