import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeOk, probeTargets } from './probe.ts';

const BIN = fileURLToPath(new URL('../../bin/mailroute.js', import.meta.url));

function probe(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'probe', ...args], (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('probe targets (pure)', () => {
  it.each([
    ['http://relay:9090/readyz', undefined, [['relay', 9090, '/readyz', 'relay:9090']]],
    ['http://relay/x?y=1', undefined, [['relay', 80, '/x?y=1', 'relay']]],
    [
      'http://peers.ns.svc:9090/readyz',
      ['10.0.0.5', 'fd00::7'],
      [
        ['10.0.0.5', 9090, '/readyz', 'peers.ns.svc:9090'],
        ['fd00::7', 9090, '/readyz', 'peers.ns.svc:9090'],
      ],
    ],
    ['http://[::1]:9090/readyz', undefined, [['::1', 9090, '/readyz', '[::1]:9090']]],
  ] as const)('%s on %j', (url, addresses, want) => {
    const got = probeTargets(url, addresses).map((t) => [t.host, t.port, t.path, t.hostHeader]);
    expect(got).toEqual(want);
  });

  it('refuses what it cannot probe, naming the flag', () => {
    expect(() => probeTargets('//relay')).toThrow('--url: not a URL');
    expect(() => probeTargets('https://relay/readyz')).toThrow('--url: only http:// is supported');
  });

  it.each([
    [{ status: 200, body: '' }, true],
    [{ status: 204, body: '' }, true],
    [{ status: 503, body: 'not ready' }, false],
    [{ body: '', error: 'ECONNREFUSED' }, false],
  ])('%j ok: %s', (a, ok) => expect(probeOk(a)).toBe(ok));
});

describe('mailroute probe against a real HTTP server', () => {
  let server: Server;
  let port = 0;
  let closedPort = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/readyz') res.writeHead(200).end('ready\n');
      else if (req.url === '/metrics')
        res.writeHead(200).end('a 1\nmailroute_deliveries_total{leg="copy"} 3\nb 2\n');
      else res.writeHead(503).end('draining: not ready\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    const other = createServer();
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    closedPort = (other.address() as AddressInfo).port;
    await new Promise((r) => other.close(r));
  });
  afterAll(() => new Promise((r) => server.close(r)));

  it('exits 0 when every URL answers 2xx', async () => {
    const r = await probe(['--url', `http://127.0.0.1:${port}/readyz`, '--all-addresses']);
    expect(r.stdout).toBe(`ok http://127.0.0.1:${port}/readyz (127.0.0.1): 200\n`);
    expect(r.code).toBe(0);
  });

  it('fails loudly on a 503, with the body, and on a refused connection', async () => {
    const r = await probe([
      '--url',
      `http://127.0.0.1:${port}/readyz`,
      '--url',
      `http://127.0.0.1:${port}/other`,
    ]);
    expect(r.stdout).toContain(`FAIL http://127.0.0.1:${port}/other: 503 draining: not ready`);
    expect(r.stdout).toContain('1 probe(s) failed');
    expect(r.code).toBe(1);
    const refused = await probe(['--url', `http://127.0.0.1:${closedPort}/readyz`]);
    expect(refused.stdout).toContain('ECONNREFUSED');
    expect(refused.code).toBe(1);
  });

  it('fails when the host has fewer addresses than --min-addresses (relays missing)', async () => {
    const r = await probe([
      '--url',
      `http://127.0.0.1:${port}/readyz`,
      '--all-addresses',
      '--min-addresses',
      '2',
    ]);
    expect(r.stdout).toContain('has 1 address(es), expected at least 2');
    expect(r.code).toBe(1);
  });

  it('--grep prints the matching lines of the body', async () => {
    const r = await probe([
      '--url',
      `http://127.0.0.1:${port}/metrics`,
      '--grep',
      'mailroute_deliveries_total',
    ]);
    expect(r.stdout.split('\n')).toContain('mailroute_deliveries_total{leg="copy"} 3');
    expect(r.stdout).not.toContain('a 1');
    expect(r.code).toBe(0);
  });

  it('names the flag of a bad value (exit 2)', async () => {
    const r = await probe(['--url', 'relay', '--min-addresses', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--min-addresses: not a positive integer|--url: not a URL/);
  });
});
