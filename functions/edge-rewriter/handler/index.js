'use strict';
// Lambda@Edge handler (Node.js, x86_64): the rewrite rules are Rust, compiled to WebAssembly.
// The module is instantiated once per cold start; each request passes through the rules, and
// only what a rule decides is changed: the request's uri, or a generated response. Every other
// field of the event is returned exactly as it came.

const fs = require('node:fs');
const path = require('node:path');

const wasm = new WebAssembly.Instance(
  new WebAssembly.Module(fs.readFileSync(path.join(__dirname, 'rewriter.wasm'))),
  {},
).exports;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function call(fn, text) {
  const bytes = encoder.encode(text);
  const ptr = wasm.alloc(bytes.length);
  new Uint8Array(wasm.memory.buffer, ptr, bytes.length).set(bytes);
  const packed = fn(ptr, bytes.length); // consumes the input buffer
  const outPtr = Number(packed >> 32n);
  const outLen = Number(packed & 0xffffffffn);
  const out = decoder.decode(new Uint8Array(wasm.memory.buffer, outPtr, outLen));
  wasm.dealloc(outPtr, outLen);
  return out;
}

// Options are part of the package (Lambda@Edge has no environment variables).
const configPath = path.join(__dirname, 'config.json');
if (fs.existsSync(configPath)) {
  const problem = call(wasm.configure, fs.readFileSync(configPath, 'utf8'));
  if (problem) throw new Error(`edge rewriter: ${problem}`);
}

const DESCRIPTIONS = {
  301: 'Moved Permanently',
  302: 'Found',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  414: 'URI Too Long',
};

function respond(status, headers, body) {
  const response = { status: String(status), statusDescription: DESCRIPTIONS[status] || '', headers };
  if (body !== undefined) response.body = body;
  return response;
}

function rewrite(event) {
  const request = event && event.Records && event.Records[0] && event.Records[0].cf && event.Records[0].cf.request;
  if (!request || typeof request !== 'object') {
    throw new Error('malformed CloudFront event: expected Records[0].cf.request');
  }
  if (typeof request.uri !== 'string' || typeof request.method !== 'string') {
    throw new Error('malformed CloudFront event: request.uri and request.method must be strings');
  }
  if (request.querystring !== undefined && typeof request.querystring !== 'string') {
    throw new Error('malformed CloudFront event: request.querystring must be a string');
  }
  const decision = call(wasm.decide, `${request.method}\0${request.uri}\0${request.querystring || ''}`);
  switch (decision[0]) {
    case 'P':
      return request;
    case 'U':
      request.uri = decision.slice(1);
      return request;
    case 'R': {
      const space = decision.indexOf(' ');
      const status = Number(decision.slice(1, space));
      return respond(status, {
        location: [{ key: 'Location', value: decision.slice(space + 1) }],
        'cache-control': [{ key: 'Cache-Control', value: 'max-age=3600' }],
      });
    }
    case 'E': {
      const space = decision.indexOf(' ');
      const status = Number(decision.slice(1, space));
      return respond(
        status,
        {
          'content-type': [{ key: 'Content-Type', value: 'text/plain; charset=utf-8' }],
          'cache-control': [{ key: 'Cache-Control', value: 'no-store' }],
        },
        `${status} ${DESCRIPTIONS[status] || ''}: ${decision.slice(space + 1)}\n`,
      );
    }
    default:
      throw new Error(`edge rewriter: unexpected decision ${JSON.stringify(decision)}`);
  }
}

exports.handler = async (event) => rewrite(event);
exports.rewrite = rewrite;
