'use strict';
// The real Lambda@Edge handler with the built wasm (make edge), on real-shaped CloudFront events.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PACKAGE = process.env.EDGE_PACKAGE_DIR || path.join(__dirname, '../../../target/edge/package');
const { handler } = require(path.join(PACKAGE, 'index.js'));

const fixture = (name) => JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', name), 'utf8'));
const requestOf = (event) => event.Records[0].cf.request;
function withRequest(name, changes) {
  const event = fixture(name);
  Object.assign(requestOf(event), changes);
  return event;
}

test('viewer request: an extensionless path redirects to the directory, keeping the query string', async () => {
  const res = await handler(fixture('viewer-request.json'));
  assert.deepEqual(res, {
    status: '301',
    statusDescription: 'Moved Permanently',
    headers: {
      location: [{ key: 'Location', value: '/about/?utm_source=newsletter&lang=en' }],
      'cache-control': [{ key: 'Cache-Control', value: 'max-age=3600' }],
    },
  });
});

test('viewer request: a directory is rewritten to its index, everything else untouched', async () => {
  const event = withRequest('viewer-request.json', { uri: '/about/' });
  const expected = structuredClone(requestOf(event));
  expected.uri = '/about/index.html';
  assert.deepEqual(await handler(event), expected);
});

test('origin request (S3 origin): a directory with dots is rewritten; origin and headers untouched', async () => {
  const event = fixture('origin-request-s3.json');
  const expected = structuredClone(requestOf(event));
  expected.uri = '/docs/v1.2/guide/index.html';
  assert.deepEqual(await handler(event), expected);
});

test('origin request: a directory with a dot and no slash redirects, a file passes', async () => {
  const dir = await handler(withRequest('origin-request-s3.json', { uri: '/v1.2/guide' }));
  assert.equal(dir.status, '301');
  assert.equal(dir.headers.location[0].value, '/v1.2/guide/');
  for (const uri of ['/docs/v1.2', '/file.txt', '/.hidden', '/img/logo.svg']) {
    const event = withRequest('origin-request-s3.json', { uri });
    const expected = structuredClone(requestOf(event));
    assert.deepEqual(await handler(event), expected, uri);
  }
});

test('origin request with a query string: a redirect keeps it, a rewrite leaves it untouched', async () => {
  const redirect = await handler(withRequest('origin-request-s3.json', { uri: '/guide', querystring: 'v=2&lang=fr' }));
  assert.equal(redirect.status, '301');
  assert.equal(redirect.headers.location[0].value, '/guide/?v=2&lang=fr');
  const event = withRequest('origin-request-s3.json', { uri: '/guide/', querystring: 'v=2&lang=fr' });
  const expected = structuredClone(requestOf(event));
  expected.uri = '/guide/index.html';
  assert.deepEqual(await handler(event), expected);
});

test('a sparse sample event passes through exactly as it came', async () => {
  const event = fixture('sparse-sample.json');
  const expected = structuredClone(requestOf(event));
  assert.deepEqual(await handler(event), expected);
});

test('other methods pass unchanged, body included', async () => {
  const event = fixture('post-with-body.json');
  const expected = structuredClone(requestOf(event));
  assert.deepEqual(await handler(event), expected);
  const put = withRequest('post-with-body.json', { method: 'PUT', uri: '/about' });
  assert.equal((await handler(put)).uri, '/about');
});

test('unknown fields survive a rewrite', async () => {
  const event = withRequest('origin-request-s3.json', { uri: '/a/', someFutureField: { nested: [1, 2] } });
  event.Records[0].cf.somethingNew = true;
  const res = await handler(event);
  assert.deepEqual(res.someFutureField, { nested: [1, 2] });
  assert.equal(res.uri, '/a/index.html');
});

test('no redirect leaves the site', async () => {
  for (const uri of ['//evil.example', '///evil.example/x', '/\\evil.example', '/%5Cevil.example', '//evil']) {
    const res = await handler(withRequest('viewer-request.json', { uri, querystring: 'next=//x' }));
    if (res.status && res.status.startsWith('3')) {
      const location = res.headers.location[0].value;
      assert.ok(location.startsWith('/') && !location.startsWith('//') && !location.includes('\\'), location);
    } else if (res.status) {
      assert.equal(res.status, '400', uri);
    } else {
      assert.ok(res.uri.startsWith('/') && !res.uri.startsWith('//'), res.uri);
    }
  }
});

test('dot segments, backslashes, NUL and bad escapes are answered 400 and never forwarded', async () => {
  for (const uri of ['/a/../b', '/a/%2e%2e/b', '/a\\b', '/a%00', '/a%zz', '/%2E/x']) {
    const res = await handler(withRequest('viewer-request.json', { uri }));
    assert.equal(res.status, '400', uri);
    assert.equal(res.statusDescription, 'Bad Request');
    assert.match(res.body, /^400 Bad Request: /);
    assert.equal(res.uri, undefined);
  }
});

test('a rewrite beyond 8,192 characters is answered 414', async () => {
  const uri = `/${'a'.repeat(8185)}/`;
  const res = await handler(withRequest('viewer-request.json', { uri, querystring: 'x=1' }));
  assert.equal(res.status, '414');
});

test('valid percent-encoding is preserved exactly', async () => {
  const res = await handler(withRequest('viewer-request.json', { uri: '/caf%C3%A9/men%c3%bc/' }));
  assert.equal(res.uri, '/caf%C3%A9/men%c3%bc/index.html');
});

test('malformed events fail with a clear message', async () => {
  await assert.rejects(handler({}), /malformed CloudFront event: expected Records\[0\]\.cf\.request/);
  await assert.rejects(handler(null), /malformed CloudFront event/);
  await assert.rejects(handler({ Records: [{ cf: { request: { uri: 7, method: 'GET' } } }] }), /request\.uri and request\.method must be strings/);
  await assert.rejects(
    handler({ Records: [{ cf: { request: { uri: '/', method: 'GET', querystring: ['a'] } } }] }),
    /querystring must be a string/,
  );
});

function packageWith(config) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-'));
  for (const f of ['index.js', 'rewriter.wasm']) fs.copyFileSync(path.join(PACKAGE, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

test('options come from the packaged config.json', async () => {
  const dir = packageWith({ spaPrefixes: ['/app/'], extensionless: 'rewrite', redirectStatus: 308 });
  try {
    const { handler: spa } = require(path.join(dir, 'index.js'));
    assert.equal((await spa(withRequest('viewer-request.json', { uri: '/app/users/42' }))).uri, '/app/index.html');
    assert.equal((await spa(withRequest('viewer-request.json', { uri: '/about' }))).uri, '/about/index.html');
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('an invalid config.json fails the cold start with the reason', () => {
  const dir = packageWith({ indexDocument: 'index' });
  try {
    assert.throws(() => require(path.join(dir, 'index.js')), /edge rewriter: indexDocument "index" must be a file name/);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});
