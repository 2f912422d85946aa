'use strict';
// make demo (edge): what the Lambda@Edge rewriter does with a set of URLs.
const fs = require('node:fs');
const path = require('node:path');

const pkg = path.resolve(process.argv[2]);
const { handler } = require(path.join(pkg, 'index.js'));
const base = JSON.parse(fs.readFileSync(path.join(__dirname, 'test/fixtures/viewer-request.json'), 'utf8'));

const cases = [
  ['GET', '/', ''],
  ['GET', '/about', 'utm_source=newsletter'],
  ['GET', '/about/', 'lang=en'],
  ['GET', '/v1.2/guide', ''],
  ['GET', '/docs/v1.2', ''],
  ['GET', '/file.txt', ''],
  ['GET', '/.well-known/security.txt', ''],
  ['HEAD', '/blog/', ''],
  ['POST', '/api/comments', ''],
  ['GET', '//evil.example', 'next=1'],
  ['GET', '/a//b/', ''],
  ['GET', '/caf%C3%A9/', ''],
  ['GET', '/a/../etc/passwd', ''],
  ['GET', '/a/%2e%2e/secret', ''],
  ['GET', '/a\\b', ''],
  ['GET', '/x%zz', ''],
  ['GET', `/${'d'.repeat(8185)}/`, 'q=1'],
];

(async () => {
  console.log('\n##### The CloudFront index rewriter (Rust rules as wasm in the Lambda@Edge handler) #####\n');
  for (const [method, uri, qs] of cases) {
    const event = structuredClone(base);
    Object.assign(event.Records[0].cf.request, { method, uri, querystring: qs });
    const res = await handler(event);
    const shown = uri.length > 40 ? `${uri.slice(0, 20)}…(${uri.length} chars)` : uri;
    const from = `${method.padEnd(4)} ${shown}${qs ? `?${qs}` : ''}`;
    let what;
    if (!res.status) what = res.uri === uri ? 'forwarded unchanged' : `forwarded as ${res.uri}${qs ? `?${qs}` : ''}`;
    else if (res.headers.location) what = `${res.status} ${res.statusDescription} -> ${res.headers.location[0].value}`;
    else what = `${res.status} ${res.statusDescription}: ${res.body.trim().replace(/^\d+ [A-Za-z ]+: /, '')}`;
    console.log(`  ${from.padEnd(44)} ${what}`);
  }
})();
