// The predictions example's two pages (GET /live and GET /logs with Accept: text/html) in
// headless Chromium, against a real `predictions` process in memory mode.
//
// What it proves: a browser's Accept gets the page at the API's own path; the page fills from
// its server-sent event stream, and predictions posted afterwards appear without a reload (the
// server pushes them); the logs page lists the newest first with the limit from its URL; the
// pages pass axe-core's WCAG rules; a graceful stop of the server ends the stream and the page
// says it is reconnecting. Screenshots go to $ARTIFACT_DIR (predictions-live.png,
// predictions-logs.png).
//
//   PREDICTIONS_BIN=build/dev/examples/predictions/predictions ARTIFACT_DIR=/tmp/p \
//   node --test tests/browser/predictions_pages.test.mjs
// Environment: PREDICTIONS_BIN (required), ARTIFACT_DIR, CHROMIUM (default /usr/bin/chromium),
// BROWSER_NODE_MODULES_DIR (where `npm ci` installed playwright-core). Every wait is bounded.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modulesDir = process.env.BROWSER_NODE_MODULES_DIR || here;
const requireModule = createRequire(join(resolve(modulesDir), 'package.json'));
const { chromium } = requireModule('playwright-core');
const axeSource = readFileSync(requireModule.resolve('axe-core/axe.min.js'), 'utf8');

const bin = process.env.PREDICTIONS_BIN;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifactDir = resolve(process.env.ARTIFACT_DIR || join(here, 'artifacts'));
const waitMs = 15000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

async function eventually(what, probe, timeout = waitMs) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last && last.ok) return last.value;
    if (Date.now() > deadline) throw new Error(`${what}: not true within ${timeout} ms (last seen: ${JSON.stringify(last && last.seen)})`);
    await sleep(100);
  }
}

let service;
let browser;
let page;
let base;

async function post(prediction) {
  const r = await fetch(`${base}/input`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(prediction) });
  return { status: r.status, body: await r.json() };
}

async function axeViolations() {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return result.violations.map((v) => `${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
}

describe('predictions pages', () => {
  before(async () => {
    assert.ok(bin, 'PREDICTIONS_BIN must name the predictions executable');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const child = spawn(bin, ['--port', String(port), '--push-interval-ms', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = [];
    child.stdout.on('data', (d) => log.push(d.toString()));
    child.stderr.on('data', (d) => log.push(d.toString()));
    let exited = null;
    child.on('exit', (code, signal) => { exited = { code, signal }; });
    service = { child, log, exited: () => exited };
    await eventually('predictions answers /health', async () => {
      if (exited) throw new Error(`predictions exited: ${log.join('')}`);
      try {
        return { ok: (await fetch(`${base}/health`)).status === 200 };
      } catch (error) {
        return { ok: false, seen: String(error.cause?.code || error.message) };
      }
    });
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
    page = await (await browser.newContext({ viewport: { width: 1100, height: 700 } })).newPage();
  });

  after(async () => {
    if (browser) await browser.close();
    if (service && !service.exited()) service.child.kill('SIGKILL');
  });

  test('the live page fills from its event stream and follows new predictions', async () => {
    const first = await post({ team1: 'Argentina', team2: 'France', score: '3-3', phase: 4 });
    assert.equal(first.status, 202);
    await page.goto(`${base}/live`); // the browser's own Accept: text/html first
    assert.equal(await page.title(), 'Predictions: live results');
    await eventually('status says live', async () => ({ ok: (await page.textContent('#status')) === 'live' }));
    await eventually('total 1', async () => ({ ok: (await page.textContent('#total')) === '1', seen: await page.textContent('#total') }));
    // Posted while the page is open: pushed, no reload.
    for (const p of [
      { team1: 'Argentina', team2: 'France', score: '2-1', phase: 4 },
      { team1: 'Argentina', team2: 'France', score: '3-3', phase: 4 },
      { team1: 'Morocco', team2: 'Portugal', score: '1-0', phase: 3 },
      { team1: 'Japan', team2: 'Croatia', score: '1-1', phase: 2 },
      { team1: 'Qatar', team2: 'Ecuador', score: '0-2', phase: 1 },
    ]) assert.equal((await post(p)).status, 202);
    const refused = await post({ team1: 'Brazil', team2: 'Brazil', score: '9', phase: 0 });
    assert.equal(refused.status, 400);
    await eventually('total 6', async () => ({ ok: (await page.textContent('#total')) === '6', seen: await page.textContent('#total') }));
    assert.equal(await page.textContent('#phase-4'), '3');
    const top = page.locator('#matches tr').first();
    assert.match(await top.textContent(), /Argentina - France\s*3\s*3-3 ×2\s*2-1 ×1/);
    assert.equal(await page.locator('#matches tr').count(), 4);
    assert.deepEqual(await axeViolations(), []);
    mkdirSync(artifactDir, { recursive: true });
    await page.screenshot({ path: join(artifactDir, 'predictions-live.png'), fullPage: true });
  });

  test('the logs page lists the newest first, with its limit', async () => {
    await page.goto(`${base}/logs?limit=3`);
    assert.equal(await page.title(), 'Predictions: recent logs');
    await eventually('3 rows', async () => ({ ok: (await page.locator('#logs tr').count()) === 3 && (await page.textContent('#logs')).includes('Qatar') }));
    assert.match(await page.locator('#logs tr').first().textContent(), /Qatar - Ecuador\s*0-2\s*Group stage/);
    assert.equal((await post({ team1: 'England', team2: 'Iran', score: '6-2', phase: 1 })).status, 202);
    await eventually('the new one on top', async () => ({ ok: /England - Iran/.test(await page.locator('#logs tr').first().textContent()) }));
    assert.equal(await page.locator('#logs tr').count(), 3);
    assert.deepEqual(await axeViolations(), []);
    await page.screenshot({ path: join(artifactDir, 'predictions-logs.png'), fullPage: true });
  });

  test('a graceful stop ends the stream: the page says it is reconnecting', async () => {
    service.child.kill('SIGTERM');
    await eventually('process exited 0', async () => ({ ok: service.exited() !== null, seen: service.exited() }), 10000);
    assert.equal(service.exited().code, 0, service.log.join(''));
    await eventually('status says reconnecting', async () => ({ ok: (await page.textContent('#status')) === 'reconnecting', seen: await page.textContent('#status') }));
  });
});
