// The OHIF Viewer end-to-end driver of crates/cli/tests/ohif.rs: Debian's Chromium, driven by
// playwright-core, opens the viewer that `dimsum serve --viewer` serves, as a user would:
//
//   1. the study list at ORIGIN/viewer/ must show the stored study (its patient name and study
//      description);
//   2. the study is opened from the list (its row, then the mode's button), and the viewer must
//      draw the image: the viewport canvas's region of a screenshot must not be blank (the
//      standard deviation of its luminance and its number of distinct levels, measured over
//      the middle of the viewport, away from the overlay text in the corners) and must rise
//      from left to right, as the test's study does (a gradient);
//   3. every request of the page is recorded: a response with status >= 400 or a request that
//      failed is an error, except those to another origin than the server's (the outside world,
//      which this machine cannot reach: they are aborted here, listed and ignored).
//
// It prints one JSON report on stdout and exits 0 when every check passed, 1 when one failed
// (the report says which), 2 when it could not run. Screenshots go to OUT_DIR.
//
// Usage: node ohif-e2e.mjs   with the environment:
//   OHIF_ORIGIN        http://127.0.0.1:PORT (the server; the viewer at /viewer/)
//   OHIF_STUDY_UID     the Study Instance UID to open
//   OHIF_EXPECT_TEXT   texts the study list must show, separated by "|"
//   OHIF_OUT_DIR       where screenshots and the browser's console log go
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   OHIF_TIMEOUT_MS    the time each step may take (default 45000)

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const env = name => {
  const value = process.env[name];
  if (!value) {
    console.error(`ohif-e2e: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const origin = new URL(env('OHIF_ORIGIN')).origin;
const studyUid = env('OHIF_STUDY_UID');
const expectTexts = env('OHIF_EXPECT_TEXT').split('|').filter(Boolean);
const outDir = env('OHIF_OUT_DIR');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const stepTimeout = Number(process.env.OHIF_TIMEOUT_MS || 45000);

// The flags this machine needs (its network is closed: background services of the browser
// would only fail). Playwright adds --headless and a fresh, temporary --user-data-dir.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // WebGL in software (SwiftShader; --disable-gpu leaves it on), as cornerstone renders with
  // WebGL: without it the viewer falls back to its CPU renderer and says so in a dialog.
  '--enable-unsafe-swiftshader',
];

const report = {
  origin,
  studyUid,
  steps: [],
  requests: 0,
  failedRequests: [],
  externalRequests: [],
  console: [],
  pageErrors: [],
  viewport: null,
  screenshots: [],
  ok: false,
  failure: null,
};

const isExternal = url => {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === 'data:' || parsed.protocol === 'blob:') {
      return false;
    }
    return parsed.origin !== origin;
  } catch {
    return true;
  }
};
const isLocal = url => url.startsWith('data:') || url.startsWith('blob:');

// The requests of the page that have not finished yet, and when one last started or ended.
const inFlight = new Set();
let lastActivity = Date.now();

/** Waits until no request of the page has been in flight for `ms` (at most the step timeout). */
async function quiet(page, ms) {
  const deadline = Date.now() + stepTimeout;
  while (inFlight.size > 0 || Date.now() - lastActivity < ms) {
    if (Date.now() > deadline) {
      throw new Error(
        `requests still in flight after ${stepTimeout} ms: ${[...inFlight].map(r => r.url()).join(', ')}`,
      );
    }
    await page.waitForTimeout(50);
  }
}

function step(name) {
  const started = Date.now();
  report.steps.push({ name, ms: null });
  const entry = report.steps[report.steps.length - 1];
  return () => {
    entry.ms = Date.now() - started;
  };
}

async function screenshot(page, name) {
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: false }).catch(() => {});
  report.screenshots.push(path);
  return path;
}

/**
 * Whether the viewport region shows the test's image: not blank (a spread of luminance over
 * many levels) and rising left to right, as the stored gradient does (pixel data decoded in
 * the wrong byte order or as the wrong size would not).
 */
function drawn(statistics) {
  return (
    statistics !== null &&
    statistics.stddev > 10 &&
    statistics.levels > 16 &&
    statistics.rightMean - statistics.leftMean > 40 &&
    statistics.risingFraction > 0.9
  );
}

/**
 * Luminance statistics of the region `box` (page pixels) of a screenshot, measured in the page
 * itself (the browser decodes the PNG): over the middle half of the box in each direction.
 */
async function regionStatistics(page, png, box) {
  return page.evaluate(
    async ({ data, box }) => {
      const image = new Image();
      image.src = `data:image/png;base64,${data}`;
      await image.decode();
      const scale = image.naturalWidth / window.innerWidth;
      const x = Math.round((box.x + box.width / 4) * scale);
      const y = Math.round((box.y + box.height / 4) * scale);
      const width = Math.max(1, Math.round((box.width / 2) * scale));
      const height = Math.max(1, Math.round((box.height / 2) * scale));
      const canvas = document.createElement('canvas');
      canvas.width = width;
      canvas.height = height;
      const context = canvas.getContext('2d');
      context.drawImage(image, x, y, width, height, 0, 0, width, height);
      const pixels = context.getImageData(0, 0, width, height).data;
      let sum = 0;
      let sumSquares = 0;
      const levels = new Set();
      const count = pixels.length / 4;
      for (let i = 0; i < pixels.length; i += 4) {
        const luminance = 0.2126 * pixels[i] + 0.7152 * pixels[i + 1] + 0.0722 * pixels[i + 2];
        sum += luminance;
        sumSquares += luminance * luminance;
        levels.add(Math.round(luminance));
      }
      const mean = sum / count;
      // The mean luminance of each column, left to right: the stored gradient rises that way.
      const columns = [];
      for (let column = 0; column < width; column += 1) {
        let columnSum = 0;
        for (let row = 0; row < height; row += 1) {
          const i = (row * width + column) * 4;
          columnSum += 0.2126 * pixels[i] + 0.7152 * pixels[i + 1] + 0.0722 * pixels[i + 2];
        }
        columns.push(columnSum / height);
      }
      let rising = 0;
      for (let column = 1; column < columns.length; column += 1) {
        if (columns[column] >= columns[column - 1] - 0.5) {
          rising += 1;
        }
      }
      return {
        region: { x, y, width, height },
        mean,
        stddev: Math.sqrt(Math.max(0, sumSquares / count - mean * mean)),
        levels: levels.size,
        leftMean: columns[0],
        rightMean: columns[columns.length - 1],
        risingFraction: columns.length > 1 ? rising / (columns.length - 1) : 0,
      };
    },
    { data: png.toString('base64'), box },
  );
}

async function main() {
  await mkdir(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: stepTimeout,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    // The outside world is unreachable here: such requests are aborted at once, and listed.
    await context.route(
      url => isExternal(url.href),
      route => {
        report.externalRequests.push(route.request().url());
        return route.abort('blockedbyclient');
      },
    );
    const page = await context.newPage();
    page.setDefaultTimeout(stepTimeout);
    page.on('request', request => {
      if (!isLocal(request.url())) {
        report.requests += 1;
        inFlight.add(request);
        lastActivity = Date.now();
      }
    });
    const settled = request => {
      inFlight.delete(request);
      lastActivity = Date.now();
    };
    page.on('requestfinished', settled);
    page.on('response', response => {
      if (response.status() >= 400 && !isExternal(response.url())) {
        report.failedRequests.push({
          url: response.url(),
          method: response.request().method(),
          status: response.status(),
          accept: response.request().headers().accept ?? null,
        });
      }
    });
    page.on('requestfailed', request => {
      settled(request);
      if (isExternal(request.url()) || isLocal(request.url())) {
        return;
      }
      report.failedRequests.push({
        url: request.url(),
        method: request.method(),
        status: null,
        error: request.failure()?.errorText ?? 'failed',
      });
    });
    page.on('console', message => {
      if (message.type() === 'error' || message.type() === 'warning') {
        report.console.push(`${message.type()}: ${message.text()}`.slice(0, 2000));
      }
    });
    page.on('pageerror', error => report.pageErrors.push(String(error).slice(0, 2000)));

    // 1. The study list shows the stored study.
    let done = step('study list');
    await page.goto(`${origin}/viewer/`, { waitUntil: 'domcontentloaded' });
    for (const text of expectTexts) {
      await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible' });
    }
    done();
    await dismissNotice(page, /confirm and hide/i, 3000);
    await screenshot(page, '1-study-list');

    // 2. Open it from the list: its row, then the viewer mode's button.
    done = step('open the study');
    await page.getByText(expectTexts[expectTexts.length - 1], { exact: false }).first().click();
    const mode = page.getByRole('button', { name: /basic viewer/i }).first();
    await mode.waitFor({ state: 'visible' });
    // The selected study's series and thumbnails load first: leaving the page while they do
    // would abort them.
    await quiet(page, 750);
    await Promise.all([page.waitForURL(/\/viewer\/viewer\b/), mode.click()]);
    const opened = new URL(page.url());
    if (opened.searchParams.get('StudyInstanceUIDs') !== studyUid) {
      throw new Error(`the viewer opened ${page.url()}, not the study ${studyUid}`);
    }
    done();

    // 3. The viewport draws the image: its region of a screenshot is not blank.
    done = step('viewport drawn');
    await dismissNotice(page, /skip all/i, 3000);
    const canvas = page.locator('.cornerstone-viewport-element canvas, canvas.cornerstone-canvas').first();
    await canvas.waitFor({ state: 'visible' });
    const deadline = Date.now() + stepTimeout;
    let statistics = null;
    while (Date.now() < deadline) {
      const box = await canvas.boundingBox();
      if (box && box.width > 16 && box.height > 16) {
        const png = await page.screenshot();
        statistics = { box, ...(await regionStatistics(page, png, box)) };
        if (drawn(statistics)) {
          break;
        }
      }
      await page.waitForTimeout(250);
    }
    report.viewport = statistics;
    done();
    await quiet(page, 750);
    await screenshot(page, '2-viewer');

    if (!drawn(statistics)) {
      throw new Error(`the viewport does not show the study's gradient: ${JSON.stringify(statistics)}`);
    }
    if (report.pageErrors.length > 0) {
      throw new Error(`the page threw: ${report.pageErrors.join('; ')}`);
    }
    if (report.failedRequests.length > 0) {
      throw new Error(`${report.failedRequests.length} requests failed`);
    }
    report.ok = true;
  } catch (error) {
    report.failure = String(error?.message ?? error);
    const pages = browser.contexts().flatMap(context => context.pages());
    if (pages.length > 0) {
      await screenshot(pages[0], 'failure');
    }
  } finally {
    await browser.close().catch(() => {});
  }
}

/**
 * Closes what the viewer shows over the page on a first visit, when it shows within `wait` ms:
 * `name` is the text of the button that closes it (the study list's "for investigational use
 * only" notice: "Confirm and hide"; the viewer's tour: "Skip all").
 */
async function dismissNotice(page, name, wait) {
  const button = page.getByRole('button', { name }).first();
  try {
    await button.waitFor({ state: 'visible', timeout: wait });
  } catch {
    return;
  }
  await button.click();
  await button.waitFor({ state: 'hidden' });
}

try {
  await main();
} catch (error) {
  report.failure = `the driver failed: ${error?.stack ?? error}`;
  await writeFile(join(outDir, 'report.json'), JSON.stringify(report, null, 2)).catch(() => {});
  console.log(JSON.stringify(report));
  process.exit(2);
}
await writeFile(join(outDir, 'report.json'), JSON.stringify(report, null, 2));
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
