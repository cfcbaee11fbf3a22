// The channel-metadata admin page (examples/channel-metadata/admin/) in headless Chromium,
// against a real channel-metadata-store: memory backends, both services in one process, and
// --fault-control so the test can take the store's database down and bring it back.
//
// What it proves, in the order an operator would meet it: the page and its CSS and script load
// from CMS alone; wrong credentials get the API's 401 text; client-side validation blocks a blank
// field without sending anything; a document is created and read back; what the form lets
// through but the API refuses (an oversized document, an unknown country) shows the API's code
// and message; during a database outage a write is answered 202 pending, a read is marked stale,
// health shows the database down with writes pending, and the downtime log (CRS, through CMS's
// proxy) gains a row; after recovery pending writes drain and force-update-all runs from its
// confirmation dialog (its 500 during the outage shown as given); a service that stops answering
// is a network error on the page. Screenshots (wide and 375 px) go to $ARTIFACT_DIR.
//
//   CMS_BIN=build/dev/examples/channel-metadata/channel-metadata-store \
//   ARTIFACT_DIR=/tmp/admin-artifacts node --test tests/browser/
// Environment: CMS_BIN (required), ARTIFACT_DIR (default: ./artifacts), CHROMIUM (default
// /usr/bin/chromium), BROWSER_NODE_MODULES_DIR (where `npm ci` installed playwright-core; default:
// beside this file). Every wait is bounded; the whole file is bounded by ctest's TIMEOUT.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modulesDir = process.env.BROWSER_NODE_MODULES_DIR || here;
const requireModule = createRequire(join(resolve(modulesDir), 'package.json'));
const { chromium } = requireModule('playwright-core');
// axe-core, the accessibility rules engine, evaluated into the page (not served by CMS).
const axeSource = readFileSync(requireModule.resolve('axe-core/axe.min.js'), 'utf8');

const cmsBin = process.env.CMS_BIN;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifactDir = resolve(process.env.ARTIFACT_DIR || join(here, 'artifacts'));
const user = 'cms';
const password = 'cmspass';
const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const refreshMs = 1000; // the page's polling period, shortened through ?refresh=
const waitMs = 20000; // the longest any one expectation may take to come true

// --- helpers ----------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `probe` until it returns a truthy value; fails after `timeout` ms saying what it saw last.
async function eventually(what, probe, timeout = waitMs) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last && last.ok) return last.value;
    if (Date.now() > deadline) {
      throw new Error(`${what}: not true within ${timeout} ms (last seen: ${JSON.stringify(last && last.seen)})`);
    }
    await sleep(100);
  }
}

async function textOf(locator) {
  return (await locator.count()) ? ((await locator.first().textContent()) || '').trim() : '';
}

async function waitForText(locator, pattern, what, timeout = waitMs) {
  return eventually(what, async () => {
    const visible = (await locator.count()) > 0 && (await locator.first().isVisible());
    const text = visible ? await textOf(locator) : '<hidden>';
    return { ok: visible && pattern.test(text), value: text, seen: text };
  }, timeout);
}

// --- the service under test ---------------------------------------------------------------------

let cms; // {process, log, base}
let browser;
let page;
const pageErrors = [];
const foreignRequests = [];
const apiRequests = [];

async function startCms() {
  assert.ok(cmsBin, 'CMS_BIN must name the channel-metadata-store executable');
  assert.ok(existsSync(cmsBin), `CMS_BIN ${cmsBin} does not exist`);
  const port = await freePort();
  const crsPort = await freePort();
  const args = [
    '--backend', 'memory', '--fault-control', '--port', String(port), '--address', '127.0.0.1',
    '--crs-port', String(crsPort), '--peer-url', `http://127.0.0.1:${crsPort}`,
    // A read while the database is down is served from the cache; past the soft TTL it is marked
    // stale, which is what the page must show.
    '--soft-ttl', '1s',
  ];
  const child = spawn(cmsBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  child.stdout.on('data', (d) => log.push(d.toString()));
  child.stderr.on('data', (d) => log.push(d.toString()));
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const base = `http://127.0.0.1:${port}`;
  await eventually('CMS answers /private/status', async () => {
    if (exited) throw new Error(`CMS exited (${JSON.stringify(exited)}) before answering:\n${log.join('')}`);
    try {
      const r = await fetch(`${base}/private/status`);
      return { ok: r.status === 200, seen: r.status };
    } catch (error) {
      return { ok: false, seen: String(error.cause?.code || error.message) };
    }
  });
  return { process: child, log, base, exited: () => exited };
}

// SIGTERM, then SIGKILL if it has not exited within 5 s.
async function stopCms() {
  if (cms.exited()) return;
  cms.process.kill('SIGTERM');
  const deadline = Date.now() + 5000;
  while (!cms.exited() && Date.now() < deadline) await sleep(50);
  if (!cms.exited()) cms.process.kill('SIGKILL');
}

async function setDatabaseDown(down) {
  const r = await fetch(`${cms.base}/private/faults/database`, {
    method: 'POST',
    headers: { Authorization: authorization, 'Content-Type': 'application/json' },
    body: JSON.stringify({ down }),
  });
  assert.equal(r.status, 200, `fault route answered ${r.status}: ${await r.text()}`);
}

async function screenshot(name, options = {}) {
  mkdirSync(artifactDir, { recursive: true });
  const path = join(artifactDir, name);
  await page.screenshot({ path, fullPage: true, ...options });
  return path;
}

// axe-core's WCAG 2.1 A and AA rules on the page as it is now: [] or what fails, where.
async function accessibilityViolations() {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
}

// --- the page's parts, by their stable ids ------------------------------------------------------

const editor = {
  async fill({ countryCode, product, channels }) {
    await page.click('#doc-clear');
    await page.fill('#doc-code', countryCode);
    await page.fill('#doc-product', product);
    for (let i = 0; i < channels.length; i += 1) {
      if (i > 0) await page.click('#doc-add-row');
      const row = page.locator('[data-testid="meta-row"]').nth(i);
      for (const key of ['name', 'language', 'type']) await row.locator(`[data-field="${key}"]`).fill(channels[i][key]);
    }
  },
  async save() {
    await page.click('#doc-submit');
  },
};

async function lookUp(code) {
  // By keyboard: type the code and press Enter in the field.
  await page.fill('#lookup-code', '');
  await page.focus('#lookup-code');
  await page.keyboard.type(code);
  await page.keyboard.press('Enter');
}

async function lookupRows() {
  return page.$$eval('#lookup-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
}

async function downtimeRowCount() {
  return page.locator('[data-testid="downtime-row"]').count();
}

// --- the test ---------------------------------------------------------------------------------

describe('channel-metadata admin page', { concurrency: false }, () => {
  before(async () => {
    assert.ok(existsSync(chromiumPath), `no Chromium at ${chromiumPath} (apt-get install chromium)`);
    cms = await startCms();
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(waitMs);
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.origin !== cms.base) foreignRequests.push(request.url());
      if (url.pathname.startsWith('/api/')) apiRequests.push(`${request.method()} ${url.pathname}`);
    });
  });

  after(async () => {
    if (page) await screenshot('admin-page-last.png').catch(() => {});
    if (browser) await browser.close();
    if (cms) {
      await stopCms();
      mkdirSync(artifactDir, { recursive: true });
      writeFileSync(join(artifactDir, 'cms.log'), cms.log.join(''));
    }
  });

  test('the page, its stylesheet and its script load from CMS alone; health is shown before signing in', async () => {
    const response = await page.goto(`${cms.base}/admin/?refresh=${refreshMs}`);
    assert.equal(response.status(), 200);
    await page.waitForSelector('html[data-ready="true"]');
    // The stylesheet applied (a wrong content type would make Chromium drop it).
    const headerBackground = await page.$eval('.page-header', (e) => getComputedStyle(e).backgroundColor);
    assert.equal(headerBackground, 'rgb(11, 92, 173)');
    await waitForText(page.locator('#health-database'), /^UP$/, 'database UP');
    await waitForText(page.locator('#health-pending'), /^0$/, 'no pending writes');
    assert.ok(await page.isHidden('#app'), 'the operator parts stay hidden until signed in');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'login-user', 'focus starts in the login form');
    assert.deepEqual(await accessibilityViolations(), [], 'signed out');
  });

  test('wrong credentials: the API\'s 401 text, and nothing else opens', async () => {
    await page.fill('#login-user', user);
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-submit');
    const text = await waitForText(page.locator('#login-error'), /Invalid or missing credentials/, 'the 401 text');
    assert.match(text, /HTTP 401/);
    assert.ok(await page.isHidden('#app'));
  });

  test('signs in; the credentials live in the page\'s memory only', async () => {
    await page.fill('#login-password', password);
    await page.press('#login-password', 'Enter');
    await page.waitForSelector('#app', { state: 'visible' });
    assert.equal(await textOf(page.locator('#session-user')), user);
    assert.equal(await page.inputValue('#login-password'), '', 'the password field is emptied');
    const stored = await page.evaluate(() => ({
      local: localStorage.length, session: sessionStorage.length, cookies: document.cookie,
    }));
    assert.deepEqual(stored, { local: 0, session: 0, cookies: '' });
    // The downtime log loaded with the sign-in (memory mode starts with none).
    await waitForText(page.locator('#downtime-updated'), /\d/, 'downtime log loaded');
    assert.ok(await page.isHidden('#downtime-error'), await textOf(page.locator('#downtime-error')));
  });

  test('client-side validation blocks a blank field and a bad code, sending nothing', async () => {
    const before = apiRequests.length;
    await editor.fill({ countryCode: 'G1', product: '   ', channels: [{ name: 'AT One', language: '', type: 'News' }] });
    await editor.save();
    assert.match(await waitForText(page.locator('#doc-code-error'), /two letters/, 'code error'), /two letters/);
    assert.match(await textOf(page.locator('#doc-product-error')), /must not be blank/);
    const row = page.locator('[data-testid="meta-row"]').first();
    assert.match(await textOf(row.locator('[data-error="language"]')), /must not be blank/);
    assert.equal(await page.getAttribute('#doc-product', 'aria-invalid'), 'true');
    assert.match(await textOf(page.locator('#doc-summary')), /Not sent: 3 fields/);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'doc-code', 'focus on the first bad field');
    assert.deepEqual(await accessibilityViolations(), [], 'with field errors shown');
    // Removing the only channel is caught too.
    await page.click('[data-testid="remove-row"]');
    await page.fill('#doc-code', 'GB');
    await page.fill('#doc-product', 'exampleProduct');
    await editor.save();
    assert.match(await waitForText(page.locator('#doc-rows-error'), /at least one channel/, 'rows error'), /channel/);
    assert.equal(apiRequests.length, before, `nothing was sent: ${apiRequests.slice(before)}`);
  });

  test('creates a document and reads it back', async () => {
    await editor.fill({
      countryCode: 'gb',
      product: 'exampleProduct',
      channels: [
        { name: 'AT One', language: 'English', type: 'News' },
        { name: 'Kanal Zwei', language: 'German', type: 'Sport' },
      ],
    });
    await editor.save();
    const text = await waitForText(page.locator('#doc-result[data-state="ok"]'), /Data successfully posted/, 'saved');
    assert.match(text, /GB/);
    await lookUp('gb');
    await page.waitForSelector('#lookup-result', { state: 'visible' });
    assert.equal(await textOf(page.locator('#lookup-country')), 'GB');
    assert.equal(await textOf(page.locator('#lookup-product')), 'exampleProduct');
    assert.deepEqual(await lookupRows(), [['AT One', 'English', 'News'], ['Kanal Zwei', 'German', 'Sport']]);
    assert.ok(await page.isHidden('#lookup-stale'), 'a fresh read is not marked stale');
    // "Edit this document" puts it back into the form.
    await page.click('#lookup-edit');
    assert.equal(await page.inputValue('#doc-code'), 'GB');
    assert.equal(await page.locator('[data-testid="meta-row"]').count(), 2);
  });

  test('what the form lets through but the API refuses shows the API\'s code and message', async () => {
    // Every field is valid to the form; the document is larger than CMS's body limit (64 KiB).
    await editor.fill({
      countryCode: 'FR',
      product: 'exampleProduct',
      channels: [{ name: 'x'.repeat(70 * 1024), language: 'French', type: 'News' }],
    });
    await editor.save();
    const text = await waitForText(page.locator('#doc-result[data-state="error"]'), /CMS-0004/, 'the 400');
    assert.match(text, /HTTP 400/);
    // An unknown country: the API's 404 as it gave it.
    await lookUp('ZZ');
    const missing = await waitForText(page.locator('#lookup-error'), /CMS-0003/, 'the 404');
    assert.match(missing, /CMS-0003: Failed to find item \(HTTP 404\)/);
    assert.ok(await page.isHidden('#lookup-result'));
  });

  test('database outage: health says so, a write is pending (202), a read is stale, the downtime log gains a row', async () => {
    const downtimeBefore = await downtimeRowCount();
    await setDatabaseDown(true);
    await waitForText(page.locator('#health-database'), /^DOWN$/, 'database DOWN on the page');
    await editor.fill({
      countryCode: 'GB',
      product: 'outageProduct',
      channels: [{ name: 'AT One', language: 'English', type: 'News' }],
    });
    await editor.save();
    const pending = await waitForText(page.locator('#doc-result[data-state="pending"]'), /HTTP 202/, 'the 202');
    assert.match(pending, /^Accepted, pending: /);
    await eventually('pending writes shown', async () => {
      const seen = await textOf(page.locator('#health-pending'));
      return { ok: Number(seen) >= 1, seen };
    });
    // Past the soft TTL (1 s) a read while the database is down comes from the last known good,
    // marked stale; the write that was accepted is what is read.
    await eventually('a stale read of the pending write', async () => {
      await lookUp('GB');
      await page.waitForSelector('#lookup-result', { state: 'visible' });
      const seen = { product: await textOf(page.locator('#lookup-product')), stale: await page.isVisible('#lookup-stale') };
      if (!seen.stale) await sleep(500);
      return { ok: seen.stale && seen.product === 'outageProduct', seen };
    });
    await eventually('a downtime row after the outage', async () => {
      const seen = await downtimeRowCount();
      return { ok: seen > downtimeBefore, seen };
    });
    assert.ok(await page.isHidden('#downtime-error'), await textOf(page.locator('#downtime-error')));
    // force-update-all cannot write to a database that is down: its 500 text, as given.
    await page.click('#force-update');
    await page.click('#force-confirm');
    const refused = await waitForText(page.locator('#force-result[data-state="error"]'), /HTTP 500/, 'the 500');
    assert.match(refused, /^Failed to update database: .+ \(HTTP 500\)$/);
    assert.deepEqual(await accessibilityViolations(), [], 'during the outage, everything shown');
    await screenshot('admin-page-outage.png');
  });

  test('recovery: pending writes drain, force-update-all runs after its confirmation', async () => {
    await setDatabaseDown(false);
    await waitForText(page.locator('#health-database'), /^UP$/, 'database UP again');
    await waitForText(page.locator('#health-pending'), /^0$/, 'pending writes drained', 30000);
    // Cancel first: nothing runs.
    const before = apiRequests.length;
    await page.click('#force-update');
    await page.waitForSelector('#force-dialog[open]');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#force-dialog:not([open])', { state: 'attached' });
    assert.deepEqual(apiRequests.slice(before), [], 'cancelled: nothing ran');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'force-update', 'focus returns to the button');
    await page.click('#force-update');
    await page.click('#force-confirm');
    const done = await waitForText(page.locator('#force-result[data-state="ok"]'), /Successfully updated the database/, 'force-update-all');
    assert.match(done, /HTTP 200/);
    await lookUp('GB');
    await eventually('a fresh read after recovery', async () => {
      const seen = { product: await textOf(page.locator('#lookup-product')), stale: await page.isVisible('#lookup-stale') };
      return { ok: !seen.stale && seen.product === 'outageProduct', seen };
    });
    const wide = await screenshot('admin-page.png');
    assert.ok(existsSync(wide));
  });

  test('works at a narrow width: nothing scrolls sideways', async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    await editor.fill({ countryCode: 'DE', product: 'p', channels: [{ name: 'a', language: 'b', type: 'c' }] });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a 375 px screen`);
    await screenshot('admin-page-narrow.png');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('signing out forgets the credentials and what they fetched', async () => {
    await page.click('#logout');
    await page.waitForSelector('#login-section', { state: 'visible' });
    assert.ok(await page.isHidden('#app'));
    assert.equal(await page.locator('#lookup-table tbody tr').count(), 0);
    assert.equal(await downtimeRowCount(), 0);
  });

  test('a service that stops answering is shown as a network error, not as stale figures', async () => {
    await stopCms();
    const text = await waitForText(page.locator('#health-error'), /Network error/, 'the network error');
    assert.match(text, /^Health check failed: Network error: /);
    assert.equal(await textOf(page.locator('#health-database')), 'unknown');
  });

  test('no script error, and no request left CMS\'s origin', () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreignRequests, []);
  });
});
