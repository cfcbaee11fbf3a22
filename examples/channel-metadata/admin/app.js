// The channel-metadata admin page: plain JavaScript, no build step, no dependencies.
//
// Everything it shows comes from CMS, same origin: the document routes (/api/channel-metadata/...),
// /private/healthcheck, and CRS's downtime log through CMS's proxy (/admin/crs/get-downtime-logs).
// The operator's credentials live in this closure only: never in storage or cookies, gone on
// reload. Every answer that is not a success is shown as the API gave it (errorCode: message,
// with the status), network failures and timeouts too; data from the API is only ever written
// with textContent, never parsed as HTML.
'use strict';

(() => {
  const params = new URLSearchParams(window.location.search);
  // ?refresh=<ms> shortens the polling period (the browser test uses it); 1 s to 10 min.
  const refreshMs = Math.min(Math.max(Number(params.get('refresh')) || 5000, 1000), 600000);
  const requestTimeoutMs = 10000;
  const api = {
    document: (code) => `/api/channel-metadata/${encodeURIComponent(code)}`,
    forceUpdateAll: '/api/channel-metadata/force-update-all',
    health: '/private/healthcheck',
    downtime: '/admin/crs/get-downtime-logs',
  };

  let credentials = null; // {user, authorization}

  const $ = (id) => document.getElementById(id);

  // --- talking to the API ------------------------------------------------------------------

  // Basic credentials as UTF-8 (btoa alone throws on anything outside Latin-1).
  function basicAuthorization(user, password) {
    let binary = '';
    for (const byte of new TextEncoder().encode(`${user}:${password}`)) binary += String.fromCharCode(byte);
    return `Basic ${window.btoa(binary)}`;
  }

  // One request. Never throws: resolves {status, ok, headers, text, json} or, when no answer
  // came, {status: 0, ok: false, networkError}. credentials: 'omit' keeps cookies out and keeps
  // the browser from raising its own login prompt on a 401; the Authorization header we set is
  // still sent.
  async function request(method, path, { body, authorization } = {}) {
    const headers = { Accept: 'application/json, text/plain;q=0.9' };
    if (authorization) headers.Authorization = authorization;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), requestTimeoutMs);
    try {
      const response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
        signal: controller.signal,
      });
      const text = await response.text();
      let json = null;
      try {
        json = text.trim() ? JSON.parse(text) : null;
      } catch {
        json = null; // a text answer, shown as text
      }
      return { status: response.status, ok: response.ok, headers: response.headers, text, json };
    } catch (error) {
      const why = error && error.name === 'AbortError'
        ? `no answer within ${requestTimeoutMs / 1000} s`
        : `the service could not be reached (${error && error.message ? error.message : error})`;
      return { status: 0, ok: false, networkError: `Network error: ${why}` };
    } finally {
      clearTimeout(timer);
    }
  }

  function authorized(method, path, options = {}) {
    if (!credentials) {
      return Promise.resolve({ status: 0, ok: false, networkError: 'Not signed in' });
    }
    return request(method, path, { ...options, authorization: credentials.authorization });
  }

  // What the API said, for people: "CMS-0003: Failed to find item (HTTP 404)", the text of a
  // text answer, or the network error; details ([{field, message}]) listed separately.
  function describe(result) {
    if (result.networkError) return { text: result.networkError, details: [] };
    const status = `HTTP ${result.status}`;
    const j = result.json;
    if (j && typeof j === 'object' && !Array.isArray(j) && (j.errorCode || j.statusCode || j.message)) {
      const code = j.errorCode || j.statusCode;
      const message = typeof j.message === 'string' ? j.message : JSON.stringify(j.message ?? '');
      const details = Array.isArray(j.details)
        ? j.details.map((d) => (d && typeof d === 'object' ? d : { message: String(d) }))
        : [];
      return { text: `${code ? `${code}: ` : ''}${message} (${status})`, details };
    }
    const text = (result.text || '').trim();
    return { text: text ? `${text} (${status})` : `${status}, with an empty answer`, details: [] };
  }

  // --- showing things ----------------------------------------------------------------------

  // kind: 'ok' | 'pending' | 'error' | 'warning'; data-state carries it for the test and CSS.
  function showMessage(element, kind, text, details = []) {
    element.replaceChildren(document.createTextNode(text));
    if (details.length) {
      const list = document.createElement('ul');
      for (const d of details) {
        const item = document.createElement('li');
        item.textContent = d.field ? `${d.field}: ${d.message ?? ''}` : String(d.message ?? '');
        list.append(item);
      }
      element.append(list);
    }
    element.className = `message ${kind}`;
    element.dataset.state = kind;
    element.hidden = false;
  }

  function hideMessage(element) {
    element.hidden = true;
    element.replaceChildren();
    delete element.dataset.state;
  }

  function setFieldError(input, errorElement, message) {
    if (message) {
      errorElement.textContent = message;
      errorElement.hidden = false;
      input.setAttribute('aria-invalid', 'true');
    } else {
      errorElement.textContent = '';
      errorElement.hidden = true;
      input.removeAttribute('aria-invalid');
    }
  }

  function now() {
    return new Date().toLocaleTimeString();
  }

  // While a request runs its button refuses clicks, but is not `disabled`: disabling the focused
  // button would drop the keyboard user's focus to the page's start.
  function busy(button, on) {
    button.setAttribute('aria-disabled', String(on));
    button.setAttribute('aria-busy', String(on));
  }

  function isBusy(button) {
    return button.getAttribute('aria-busy') === 'true';
  }

  // --- the rules of the contract, checked before sending -----------------------------------

  const countryCodePattern = /^[A-Za-z]{2}$/;

  function countryCodeProblem(raw) {
    const code = raw.trim();
    if (!code) return 'Enter a country code.';
    if (!countryCodePattern.test(code)) return 'A country code is two letters A-Z, e.g. GB.';
    return '';
  }

  function blankProblem(value, what) {
    return value.trim() ? '' : `${what} must not be blank.`;
  }

  // --- polling -------------------------------------------------------------------------------

  // Runs `refresh` now and then every refreshMs after the previous run finished (a slow answer
  // never piles up requests); skipped while the tab is hidden. stop() ends the current cycle.
  function poller(refresh) {
    let generation = 0;
    let timer = null;
    async function tick(mine) {
      timer = null;
      if (mine !== generation) return;
      if (!document.hidden) await refresh();
      if (mine === generation) timer = setTimeout(() => tick(mine), refreshMs);
    }
    return {
      start() {
        this.stop();
        tick(generation);
      },
      startLater() {
        this.stop();
        const mine = generation;
        timer = setTimeout(() => tick(mine), refreshMs);
      },
      stop() {
        generation += 1;
        if (timer !== null) clearTimeout(timer);
        timer = null;
      },
    };
  }

  // --- health --------------------------------------------------------------------------------

  function showBadge(element, status) {
    const value = typeof status === 'string' && status ? status : 'absent';
    element.textContent = value;
    element.dataset.status = value.toLowerCase();
  }

  async function refreshHealth() {
    const result = await request('GET', api.health);
    const errorElement = $('health-error');
    const j = result.json;
    if ((result.status === 200 || result.status === 503) && j && typeof j === 'object' && j.status) {
      const components = j.components && typeof j.components === 'object' ? j.components : {};
      showBadge($('health-overall'), j.status);
      showBadge($('health-database'), components.database && components.database.status);
      showBadge($('health-cache'), components.cache && components.cache.status);
      showBadge($('health-bus'), components.bus && components.bus.status);
      const writes = components.writes;
      const pending = writes && writes.details ? writes.details.pending : undefined;
      $('health-pending').textContent = Number.isFinite(pending) ? String(pending) : 'unknown';
      $('health-pending').dataset.pending = Number.isFinite(pending) ? String(pending) : '';
      const extra = $('health-extra');
      extra.replaceChildren();
      for (const [name, component] of Object.entries(components)) {
        if (['database', 'cache', 'bus', 'writes'].includes(name)) continue;
        const item = document.createElement('li');
        item.textContent = `${name}: ${component && component.status ? component.status : 'absent'}`;
        extra.append(item);
      }
      hideMessage(errorElement);
    } else {
      for (const id of ['health-overall', 'health-database', 'health-cache', 'health-bus']) showBadge($(id), 'unknown');
      $('health-pending').textContent = 'unknown';
      showMessage(errorElement, 'error', `Health check failed: ${describe(result).text}`);
    }
    $('health-updated').textContent = now();
  }

  // --- downtime log ----------------------------------------------------------------------------

  function renderDowntime(result) {
    const errorElement = $('downtime-error');
    if (result.status === 200 && Array.isArray(result.json)) {
      const body = $('downtime-table').tBodies[0];
      const rows = [];
      // The API lists the newest last; an operator wants it on top.
      for (const entry of [...result.json].reverse()) {
        const row = document.createElement('tr');
        row.dataset.testid = 'downtime-row';
        const id = document.createElement('td');
        id.textContent = entry && entry.id !== undefined ? String(entry.id) : '';
        const at = document.createElement('td');
        at.textContent = entry && entry.downtimeTimestamp !== undefined ? String(entry.downtimeTimestamp) : '';
        row.append(id, at);
        rows.push(row);
      }
      body.replaceChildren(...rows);
      $('downtime-count').textContent = String(rows.length);
      $('downtime-empty').hidden = rows.length !== 0;
      hideMessage(errorElement);
    } else {
      // The last good table stays; the error says why it is not being refreshed.
      const { text, details } = describe(result);
      showMessage(errorElement, 'error', `Could not load the downtime log: ${text}`, details);
    }
    $('downtime-updated').textContent = now();
  }

  // An answer that arrives after signing out (or in again) belongs to the old session: dropped.
  const downtimePoller = poller(async () => {
    const session = credentials;
    const result = await authorized('GET', api.downtime);
    if (session && session === credentials) renderDowntime(result);
  });
  const healthPoller = poller(refreshHealth);

  // --- signing in and out ----------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    if (isBusy($('login-submit'))) return;
    const userInput = $('login-user');
    const passwordInput = $('login-password');
    const loginError = $('login-error');
    hideMessage(loginError);
    const user = userInput.value;
    let problem = '';
    if (!user.trim()) problem = 'Enter the user.';
    else if (user.includes(':')) problem = "A user name cannot contain ':' (HTTP Basic).";
    setFieldError(userInput, $('login-user-error'), problem);
    if (problem) {
      userInput.focus();
      return;
    }
    const authorization = basicAuthorization(user, passwordInput.value);
    // The credentials are checked by asking for the downtime log, which the page needs anyway:
    // a 401 means they are wrong; any other answer means CMS accepted them.
    busy($('login-submit'), true);
    const result = await request('GET', api.downtime, { authorization });
    busy($('login-submit'), false);
    if (result.status === 0 || result.status === 401) {
      const { text, details } = describe(result);
      showMessage(loginError, 'error', `Not signed in: ${text}`, details);
      passwordInput.focus();
      return;
    }
    credentials = { user, authorization };
    passwordInput.value = '';
    $('session-user').textContent = user;
    $('session').hidden = false;
    $('login-section').hidden = true;
    $('app').hidden = false;
    renderDowntime(result);
    downtimePoller.startLater();
    $('lookup-code').focus();
  }

  function signOut() {
    credentials = null;
    downtimePoller.stop();
    $('session').hidden = true;
    $('app').hidden = true;
    $('login-section').hidden = false;
    // Nothing fetched with the credentials stays on screen.
    $('lookup-table').tBodies[0].replaceChildren();
    $('lookup-result').hidden = true;
    $('downtime-table').tBodies[0].replaceChildren();
    $('downtime-count').textContent = '0';
    $('downtime-updated').textContent = 'never';
    for (const id of ['lookup-error', 'doc-result', 'doc-summary', 'force-result', 'downtime-error']) hideMessage($(id));
    clearEditor();
    $('login-user').focus();
  }

  // --- looking a country up ----------------------------------------------------------------------

  let lastLookup = null; // the document last shown, for "Edit this document"

  // A header whose name says "stale", or an RFC 7234 `Warning: 110` (response is stale).
  function staleHeader(headers) {
    for (const [name, value] of headers) {
      const lower = name.toLowerCase();
      if (lower.includes('stale') && !/^\s*(false|0|no)\s*$/i.test(value)) return true;
      if (lower === 'warning' && /^\s*110\b/.test(value)) return true;
    }
    return false;
  }

  function isDocument(j) {
    return j && typeof j === 'object' && typeof j.countryCode === 'string' && typeof j.product === 'string'
      && Array.isArray(j.metadata);
  }

  async function lookUp(event) {
    event.preventDefault();
    if (isBusy($('lookup-submit'))) return;
    const input = $('lookup-code');
    const errorElement = $('lookup-error');
    const problem = countryCodeProblem(input.value);
    setFieldError(input, $('lookup-code-error'), problem);
    hideMessage(errorElement);
    if (problem) {
      input.focus();
      return;
    }
    const code = input.value.trim().toUpperCase();
    busy($('lookup-submit'), true);
    const session = credentials;
    const result = await authorized('GET', api.document(code));
    busy($('lookup-submit'), false);
    if (session !== credentials) return; // signed out meanwhile
    if (result.status === 200 && isDocument(result.json)) {
      const doc = result.json;
      lastLookup = doc;
      $('lookup-country').textContent = doc.countryCode;
      $('lookup-product').textContent = doc.product;
      $('lookup-stale').hidden = !staleHeader(result.headers);
      const rows = doc.metadata.map((channel) => {
        const row = document.createElement('tr');
        row.dataset.testid = 'lookup-row';
        for (const key of ['name', 'language', 'type']) {
          const cell = document.createElement('td');
          cell.textContent = channel && channel[key] !== undefined ? String(channel[key]) : '';
          row.append(cell);
        }
        return row;
      });
      $('lookup-table').tBodies[0].replaceChildren(...rows);
      $('lookup-result').hidden = false;
      return;
    }
    lastLookup = null;
    $('lookup-result').hidden = true;
    const shown = result.status === 200
      ? { text: `The answer is not a channel metadata document (HTTP 200): ${result.text.slice(0, 200)}`, details: [] }
      : describe(result);
    showMessage(errorElement, 'error', shown.text, shown.details);
  }

  // --- the editor ------------------------------------------------------------------------------

  let rowSerial = 0; // unique ids for each row's inputs and errors

  function rows() {
    return [...$('doc-rows').children];
  }

  // Gives each row's labels and remove button a name that says which channel they belong to.
  function renumberRows() {
    rows().forEach((row, index) => {
      for (const label of row.querySelectorAll('label')) {
        const hidden = label.querySelector('.visually-hidden');
        hidden.textContent = `Channel ${index + 1} `;
      }
      row.querySelector('.remove-row').setAttribute('aria-label', `Remove channel ${index + 1}`);
      row.dataset.index = String(index);
    });
  }

  function addRow(values = {}) {
    const fragment = $('meta-row-template').content.cloneNode(true);
    const row = fragment.querySelector('.meta-row');
    const serial = (rowSerial += 1);
    for (const key of ['name', 'language', 'type']) {
      const input = row.querySelector(`[data-field="${key}"]`);
      const label = row.querySelector(`[data-for="${key}"]`);
      const error = row.querySelector(`[data-error="${key}"]`);
      input.id = `doc-row-${serial}-${key}`;
      error.id = `doc-row-${serial}-${key}-error`;
      label.htmlFor = input.id;
      const hidden = document.createElement('span');
      hidden.className = 'visually-hidden';
      label.prepend(hidden);
      input.setAttribute('aria-describedby', error.id);
      input.value = values[key] ?? '';
    }
    row.querySelector('.remove-row').addEventListener('click', () => removeRow(row));
    $('doc-rows').append(row);
    renumberRows();
    return row;
  }

  function removeRow(row) {
    const all = rows();
    const next = all[all.indexOf(row) + 1] || all[all.indexOf(row) - 1];
    row.remove();
    renumberRows();
    // Keep the keyboard user somewhere sensible.
    (next ? next.querySelector('[data-field="name"]') : $('doc-add-row')).focus();
  }

  function clearEditorErrors() {
    setFieldError($('doc-code'), $('doc-code-error'), '');
    setFieldError($('doc-product'), $('doc-product-error'), '');
    $('doc-rows-error').hidden = true;
    $('doc-rows-error').textContent = '';
    for (const row of rows()) {
      for (const key of ['name', 'language', 'type']) {
        setFieldError(row.querySelector(`[data-field="${key}"]`), row.querySelector(`[data-error="${key}"]`), '');
      }
    }
    hideMessage($('doc-summary'));
  }

  function clearEditor() {
    $('doc-code').value = '';
    $('doc-product').value = '';
    $('doc-rows').replaceChildren();
    addRow();
    clearEditorErrors();
    hideMessage($('doc-result'));
  }

  function fillEditor(doc) {
    clearEditor();
    $('doc-code').value = doc.countryCode;
    $('doc-product').value = doc.product;
    $('doc-rows').replaceChildren();
    for (const channel of doc.metadata) addRow(channel || {});
    if (!doc.metadata.length) addRow();
    $('doc-code').focus();
  }

  // The contract's rules: two letters; non-blank product; at least one channel, each with a
  // non-blank name, language and type. Returns the document to send, or null after showing
  // every problem next to its field.
  function readEditor() {
    clearEditorErrors();
    const problems = []; // [input to focus]
    const code = $('doc-code');
    const codeProblem = countryCodeProblem(code.value);
    setFieldError(code, $('doc-code-error'), codeProblem);
    if (codeProblem) problems.push(code);
    const product = $('doc-product');
    const productProblem = blankProblem(product.value, 'The product');
    setFieldError(product, $('doc-product-error'), productProblem);
    if (productProblem) problems.push(product);
    const metadata = [];
    if (rows().length === 0) {
      $('doc-rows-error').textContent = 'Add at least one channel.';
      $('doc-rows-error').hidden = false;
      problems.push($('doc-add-row'));
    }
    rows().forEach((row, index) => {
      const channel = {};
      for (const key of ['name', 'language', 'type']) {
        const input = row.querySelector(`[data-field="${key}"]`);
        const what = `Channel ${index + 1}'s ${key}`;
        const problem = blankProblem(input.value, what);
        setFieldError(input, row.querySelector(`[data-error="${key}"]`), problem);
        if (problem) problems.push(input);
        channel[key] = input.value.trim();
      }
      metadata.push(channel);
    });
    if (problems.length) {
      const count = problems.length === 1 ? 'one field needs' : `${problems.length} fields need`;
      showMessage($('doc-summary'), 'error', `Not sent: ${count} attention (see below).`);
      problems[0].focus();
      return null;
    }
    return { countryCode: code.value.trim().toUpperCase(), metadata, product: product.value.trim() };
  }

  // The API's field details (countryCode, product, metadata, metadata[i].name ...) next to
  // their fields as well.
  function showServerFieldErrors(details) {
    for (const d of details) {
      if (!d || typeof d.field !== 'string') continue;
      const message = `${d.field} ${d.message ?? ''}`.trim();
      if (d.field === 'countryCode') setFieldError($('doc-code'), $('doc-code-error'), message);
      else if (d.field === 'product') setFieldError($('doc-product'), $('doc-product-error'), message);
      else if (d.field === 'metadata') {
        $('doc-rows-error').textContent = message;
        $('doc-rows-error').hidden = false;
      } else {
        const match = /^metadata\[(\d+)\](?:\.(name|language|type))?$/.exec(d.field);
        const row = match ? rows()[Number(match[1])] : undefined;
        if (row && match[2]) {
          setFieldError(row.querySelector(`[data-field="${match[2]}"]`), row.querySelector(`[data-error="${match[2]}"]`),
            message);
        }
      }
    }
  }

  async function save(event) {
    event.preventDefault();
    if (isBusy($('doc-submit'))) return;
    const resultElement = $('doc-result');
    hideMessage(resultElement);
    const doc = readEditor();
    if (!doc) return;
    busy($('doc-submit'), true);
    const result = await authorized('POST', api.document(doc.countryCode), { body: doc });
    busy($('doc-submit'), false);
    const { text, details } = describe(result);
    if (result.status === 202) {
      showMessage(resultElement, 'pending', `Accepted, pending: ${text}`);
    } else if (result.ok) {
      showMessage(resultElement, 'ok', `Saved ${doc.countryCode}: ${text}`);
    } else {
      showMessage(resultElement, 'error', `Not saved: ${text}`, details);
      showServerFieldErrors(details);
    }
  }

  // --- force-update-all ----------------------------------------------------------------------

  async function forceUpdateAll() {
    if (isBusy($('force-update'))) return;
    const resultElement = $('force-result');
    hideMessage(resultElement);
    busy($('force-update'), true);
    showMessage(resultElement, 'pending', 'Running force-update-all…');
    const result = await authorized('POST', api.forceUpdateAll);
    busy($('force-update'), false);
    const { text, details } = describe(result);
    showMessage(resultElement, result.ok ? 'ok' : 'error', text, details);
    $('force-update').focus();
  }

  function confirmForceUpdate() {
    if (isBusy($('force-update'))) return;
    const dialog = $('force-dialog');
    if (typeof dialog.showModal !== 'function') {
      if (window.confirm('Run force-update-all? Every cached document newer than the database copy is written.')) {
        forceUpdateAll();
      }
      return;
    }
    dialog.returnValue = '';
    dialog.showModal();
  }

  // --- wiring ----------------------------------------------------------------------------------

  function start() {
    for (const element of document.querySelectorAll('.refresh-seconds')) {
      element.textContent = String(refreshMs / 1000);
    }
    $('login-form').addEventListener('submit', signIn);
    $('logout').addEventListener('click', signOut);
    $('lookup-form').addEventListener('submit', lookUp);
    $('lookup-edit').addEventListener('click', () => lastLookup && fillEditor(lastLookup));
    $('editor-form').addEventListener('submit', save);
    $('doc-add-row').addEventListener('click', () => addRow().querySelector('[data-field="name"]').focus());
    $('doc-clear').addEventListener('click', () => {
      clearEditor();
      $('doc-code').focus();
    });
    $('force-update').addEventListener('click', confirmForceUpdate);
    $('force-dialog').addEventListener('close', () => {
      if ($('force-dialog').returnValue === 'confirm') forceUpdateAll();
      else $('force-update').focus();
    });
    clearEditor();
    healthPoller.start();
    document.documentElement.dataset.ready = 'true'; // the script ran: the browser test waits on it
    $('login-user').focus();
  }

  start();
})();
