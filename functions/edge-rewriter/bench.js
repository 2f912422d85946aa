'use strict';
// make bench (edge): per-event handler time of the wasm handler next to a plain JavaScript
// regex handler (the 2017 blog's rewrite) in the same process, with JSON in and out as Lambda
// does; cold init (module load + wasm instantiate) in fresh processes; package size.
// Usage: node bench.js <package dir> <zip> [BENCHMARKS.md]
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const [pkg, zip, out] = process.argv.slice(2).map((p) => p && path.resolve(p));
const { handler } = require(path.join(pkg, 'index.js'));

// The widely copied 2017 rewrite: only a trailing slash, no redirects, no validation.
async function regexHandler(event) {
  const request = event.Records[0].cf.request;
  request.uri = request.uri.replace(/\/$/, '/index.html');
  return request;
}

const base = JSON.parse(fs.readFileSync(path.join(__dirname, 'test/fixtures/viewer-request.json'), 'utf8'));
const uris = ['/', '/about', '/about/', '/docs/v1.2/guide/', '/assets/app.3f9a.js', '/img/logo.svg', '/blog/2026/11/post', '/a/../b'];
const events = uris.map((uri) => {
  const e = structuredClone(base);
  e.Records[0].cf.request.uri = uri;
  return JSON.stringify(e);
});

async function perEvent(fn, rounds) {
  // Warm up, then measure; each event is parsed and the result serialised, as Lambda does.
  for (let i = 0; i < 20000; i++) JSON.stringify(await fn(JSON.parse(events[i % events.length])));
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) JSON.stringify(await fn(JSON.parse(events[i % events.length])));
  return Number(process.hrtime.bigint() - start) / rounds / 1000; // µs
}

function coldInit(runs) {
  const script = `const t = process.hrtime.bigint(); require(${JSON.stringify(path.join(pkg, 'index.js'))}); process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));`;
  const times = [];
  for (let i = 0; i < runs; i++) times.push(Number(execFileSync(process.execPath, ['-e', script])));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

(async () => {
  const rounds = 300000;
  const wasm = await perEvent(handler, rounds);
  const regex = await perEvent(regexHandler, rounds);
  const init = coldInit(15);
  const zipBytes = fs.statSync(zip).size;
  const wasmBytes = fs.statSync(path.join(pkg, 'rewriter.wasm')).size;
  const rows = [
    ['warm handler time per event, wasm rules (JSON in/out included)', `${wasm.toFixed(2)} µs`, '<= 20 µs', wasm <= 20],
    ['warm handler time per event, JS regex reference (same process)', `${regex.toFixed(2)} µs`, '-', null],
    ['cold init: module load + wasm instantiate (median of 15)', `${init.toFixed(2)} ms`, '<= 30 ms', init <= 30],
    ['package zip (index.js, config.json, rewriter.wasm)', `${(zipBytes / 1000).toFixed(1)} KB`, '<= 200 KB', zipBytes <= 200000],
    ['rewriter.wasm, uncompressed', `${(wasmBytes / 1000).toFixed(1)} KB`, '-', null],
  ];
  let report = `### edge-rewriter (Node.js ${process.version}, ${rounds} events per handler over ${uris.length} URIs)\n\n`;
  report += '| measure | this build | target | met |\n|---|---|---|---|\n';
  for (const [name, value, target, met] of rows) {
    report += `| ${name} | ${value} | ${target} | ${met === null ? '' : met ? 'yes' : 'no'} |\n`;
  }
  report += '\nThe reference handler only rewrites a trailing slash: it does none of the redirects, validation or limits the wasm rules apply.\n';
  process.stdout.write(report);
  if (out) {
    const BEGIN = '<!-- bench:edge-rewriter:begin -->';
    const END = '<!-- bench:edge-rewriter:end -->';
    let current = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '# Benchmarks\n\nProduced by `make bench`.\n';
    const section = `${BEGIN}\n${report}${END}`;
    const b = current.indexOf(BEGIN);
    const e = current.indexOf(END);
    current = b >= 0 && e > b ? current.slice(0, b) + section + current.slice(e + END.length) : `${current.trimEnd()}\n${section}\n`;
    fs.writeFileSync(out, current);
    console.log(`recorded in ${out}`);
  }
})();
