// tools/loadgen's HTML report in headless Chromium: loadgen runs against examples/hello (a
// closed run with an --event mark and a control-socket-free run, 2 s at most), then the report
// is opened from disk and checked as a reader sees it: the four charts render with their data
// (lines with points, histogram bars, the event's dashed mark and label), the page makes no
// request beyond its own file (self-contained), raises no script error, passes axe-core's WCAG
// rules, and a screenshot is saved.
//
//   LOADGEN_BIN=build/dev/tools/loadgen/loadgen HELLO_BIN=build/dev/examples/hello/hello \
//   ARTIFACT_DIR=/tmp/loadgen-artifacts node --test tests/browser/loadgen_report.test.mjs
// Environment as admin_page.test.mjs (CHROMIUM, BROWSER_NODE_MODULES_DIR, ARTIFACT_DIR).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const modulesDir = process.env.BROWSER_NODE_MODULES_DIR || here;
const requireModule = createRequire(join(resolve(modulesDir), 'package.json'));
const { chromium } = requireModule('playwright-core');
const axeSource = readFileSync(requireModule.resolve('axe-core/axe.min.js'), 'utf8');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifactDir = resolve(process.env.ARTIFACT_DIR || join(here, 'artifacts'));
const loadgenBin = process.env.LOADGEN_BIN;
const helloBin = process.env.HELLO_BIN;

const work = mkdtempSync(join(tmpdir(), 'loadgen-report-'));
const report = join(work, 'report.html');
let hello;
let browser;

before(async () => {
  assert.ok(loadgenBin && helloBin, 'LOADGEN_BIN and HELLO_BIN must be set');
  hello = spawn(helloBin, ['--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const port = await new Promise((resolvePort, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`hello did not start: ${seen}`)), 10000);
    hello.stdout.on('data', (chunk) => {
      seen += chunk;
      const m = /listening on [^:]*:(\d+)/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    });
  });
  await promisify(execFile)(loadgenBin, ['--rate', '2000', '-d', '1.5s', '-c', '8', '-q', '--title', 'hello <GET> run',
    '--event', '0.5s=database stopped', '--event', '1s=database back', '--report', report,
    `http://127.0.0.1:${port}/hello?k={random:1..100}`], { timeout: 20000 });
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
  if (hello) hello.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
});

test('the report renders every chart from its own file, with the event marks', async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  const foreign = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const own = pathToFileURL(report).href;
  page.on('request', (r) => { if (r.url() !== own) foreign.push(r.url()); });
  await page.goto(own, { waitUntil: 'load', timeout: 15000 });

  assert.equal(await page.title(), 'hello <GET> run'); // escaped in the source, shown as given
  for (const id of ['latency', 'throughput', 'errors', 'histogram']) {
    const box = await page.locator(`#${id} svg`).boundingBox();
    assert.ok(box && box.width > 500 && box.height > 100, `#${id} is drawn (${JSON.stringify(box)})`);
  }
  // Latency: p50, p99 and max, each a line through one point per 100 ms interval.
  const series = await page.locator('#latency polyline').evaluateAll((lines) =>
    lines.map((l) => [l.dataset.series, l.getAttribute('points').trim().split(/\s+/).length]));
  assert.deepEqual(series.map(([name]) => name), ['p50', 'p99', 'max']);
  for (const [name, points] of series) assert.ok(points >= 10, `${name} has ${points} points`);
  assert.ok((await page.locator('#histogram rect.bar').count()) > 0, 'histogram bars');
  // Two event marks on each of the three time charts, labelled.
  assert.equal(await page.locator('line.event').count(), 6);
  assert.equal(await page.locator('#throughput text.event-label').first().textContent(), 'database stopped');
  const summary = JSON.parse(await page.locator('#loadgen-summary').textContent());
  assert.ok(summary.requests >= 2900 && summary.requests <= 3000, `requests ${summary.requests}`);
  assert.equal(await page.locator('#summary th', { hasText: /^requests\/s$/ }).count(), 1);

  assert.deepEqual(foreign, [], 'no request beyond the file itself');
  assert.deepEqual(errors, [], 'no script or console error');

  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return result.violations.map((v) => `${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  assert.deepEqual(violations, []);

  mkdirSync(artifactDir, { recursive: true });
  await page.screenshot({ path: join(artifactDir, 'loadgen-report.png'), fullPage: true });
  await page.close();
});
