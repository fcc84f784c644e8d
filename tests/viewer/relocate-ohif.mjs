// Relocates a built OHIF Viewer (the `dist` folder of npm's @ohif/app, built for the public URL
// "/") to another public URL such as "/viewer/", in place: what OHIF's own build does when it is
// given PUBLIC_URL. `dimsum serve --viewer DIR` serves the viewer at /viewer/, and the npm build
// loads everything from the server's root otherwise.
//
// What changes, and where the build keeps it:
//   - index.html: window.PUBLIC_URL and every root-relative src=, href= and content= (scripts, styles, icons,
//     the manifest, app-config.js);
//   - *.js: the bundler's public path (`__webpack_require__.p = "/"`), from which every chunk,
//     worker, wasm module and image of the bundle is loaded;
//   - *.css: root-relative url(/...) (fonts);
//   - manifest.json: start_url and the icons' src.
// Each kind must be found at least once (index.html's PUBLIC_URL, the main bundle's public
// path): a build laid out otherwise fails here rather than half relocated.
//
// Usage: node relocate-ohif.mjs DIST PUBLIC_URL     (PUBLIC_URL starts and ends with "/")

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

function fail(message) {
  console.error(`relocate-ohif: ERROR: ${message}`);
  process.exit(1);
}

const [dist, publicUrl] = process.argv.slice(2);
if (!dist || !publicUrl) {
  fail('usage: node relocate-ohif.mjs DIST PUBLIC_URL');
}
if (!/^\/([A-Za-z0-9._~-]+\/)+$/.test(publicUrl)) {
  fail(`the public URL ${JSON.stringify(publicUrl)} must be "/segment/.../" (plain path segments)`);
}

async function* files(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      yield* files(path);
    } else if (entry.isFile()) {
      yield path;
    }
  }
}

/** Replaces every match of `pattern` in `text`; the new text and the count. */
function replaceAll(text, pattern, replacement) {
  let count = 0;
  const out = text.replace(pattern, (...args) => {
    count += 1;
    return typeof replacement === 'function' ? replacement(...args) : replacement;
  });
  return [out, count];
}

const counts = { indexPublicUrl: 0, indexLinks: 0, publicPath: 0, cssUrls: 0, manifest: 0 };

async function rewrite(path, edit) {
  const before = await readFile(path, 'utf8');
  const after = edit(before);
  if (after !== before) {
    await writeFile(path, after);
  }
}

await rewrite(join(dist, 'index.html'), html => {
  let n;
  [html, n] = replaceAll(html, /window\.PUBLIC_URL\s*=\s*"\/"/g, `window.PUBLIC_URL=${JSON.stringify(publicUrl)}`);
  counts.indexPublicUrl += n;
  // Root-relative (not protocol-relative //host) src, href and meta content values.
  [html, n] = replaceAll(html, /\b(src|href|content)="\/(?!\/)/g, (_, attr) => `${attr}="${publicUrl}`);
  counts.indexLinks += n;
  return html;
});

for await (const path of files(dist)) {
  if (path.endsWith('.js') || path.endsWith('.mjs')) {
    await rewrite(path, js => {
      const [out, n] = replaceAll(js, /__webpack_require__\.p = "\/";/g, `__webpack_require__.p = ${JSON.stringify(publicUrl)};`);
      counts.publicPath += n;
      return out;
    });
  } else if (path.endsWith('.css')) {
    await rewrite(path, css => {
      const [out, n] = replaceAll(css, /url\(\/(?!\/)/g, `url(${publicUrl}`);
      counts.cssUrls += n;
      return out;
    });
  }
}

await rewrite(join(dist, 'manifest.json'), text => {
  let manifest;
  try {
    manifest = JSON.parse(text);
  } catch (error) {
    fail(`manifest.json is not JSON: ${error.message}`);
  }
  const relocate = value =>
    typeof value === 'string' && value.startsWith('/') && !value.startsWith('//')
      ? publicUrl + value.slice(1)
      : value;
  if ('start_url' in manifest) {
    manifest.start_url = relocate(manifest.start_url);
    counts.manifest += 1;
  }
  for (const icon of manifest.icons ?? []) {
    icon.src = relocate(icon.src);
    counts.manifest += 1;
  }
  return JSON.stringify(manifest, null, 2) + '\n';
});

if (counts.indexPublicUrl !== 2) {
  fail(`index.html sets window.PUBLIC_URL="/" ${counts.indexPublicUrl} times, not twice: not the OHIF build this script knows`);
}
if (counts.indexLinks === 0) {
  fail('index.html has no root-relative src or href: not the OHIF build this script knows');
}
if (counts.publicPath === 0) {
  fail('no bundle sets its public path to "/": not the OHIF build this script knows');
}
console.error(
  `relocate-ohif: ${dist} now served from ${publicUrl}: PUBLIC_URL, ${counts.indexLinks} links of index.html, ` +
    `the public path of ${counts.publicPath} bundles, ${counts.cssUrls} CSS urls, ${counts.manifest} manifest entries`,
);
