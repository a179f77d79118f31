import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createTelemetryHttp, type TelemetryFraming, type TelemetryServer } from './telemetry-http.ts';

const open: TelemetryServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function serve(
  framing: TelemetryFraming,
  opts: { ready?: boolean; liveness?: () => Promise<string | undefined>; failMetrics?: boolean } = {},
): Promise<string> {
  const registry = new Registry();
  const s = createTelemetryHttp({
    registry: opts.failMetrics
      ? { contentType: registry.contentType, metrics: () => Promise.reject(new Error('boom')) }
      : registry,
    readiness: () => Promise.resolve({ ready: opts.ready ?? true, detail: 'x' }),
    ...(opts.liveness ? { liveness: opts.liveness } : {}),
    framing,
  });
  open.push(s);
  const { port } = await s.listen(0, '127.0.0.1');
  return `http://127.0.0.1:${port}`;
}

const RELAY: TelemetryFraming = {
  methods: ['GET', 'HEAD'],
  textType: 'text/plain; charset=utf-8',
  headers: { 'cache-control': 'no-store' },
};
const OPERATOR: TelemetryFraming = { textType: 'text/plain' };

describe('createTelemetryHttp', () => {
  it.each([
    { path: '/healthz', status: 200, type: 'text/plain', body: 'ok\n' },
    { path: '/readyz', status: 200, type: 'application/json', body: '{"ready":true,"detail":"x"}\n' },
    { path: '/readyz?verbose', status: 200, type: 'application/json', body: '{"ready":true,"detail":"x"}\n' },
    { path: '/nope', status: 404, type: 'text/plain', body: 'not found\n' },
  ])('$path answers $status', async ({ path, status, type, body }) => {
    const r = await fetch(`${await serve(OPERATOR)}${path}`);
    expect([r.status, r.headers.get('content-type'), await r.text()]).toEqual([status, type, body]);
  });

  it('/metrics serves the registry with its content type, 500 when rendering fails', async () => {
    const ok = await fetch(`${await serve(OPERATOR)}/metrics`);
    expect([ok.status, ok.headers.get('content-type')]).toEqual([200, new Registry().contentType]);
    const bad = await fetch(`${await serve(OPERATOR, { failMetrics: true })}/metrics`);
    expect([bad.status, await bad.text()]).toEqual([500, 'metrics: boom\n']);
  });

  it('an error of the listener once it listens (EMFILE on accept) is reported, not thrown, and it still answers', async () => {
    const errors: string[] = [];
    const s = createTelemetryHttp({
      registry: new Registry(),
      readiness: () => Promise.resolve({ ready: true }),
      framing: OPERATOR,
      onError: (err) => errors.push(err.message),
    });
    open.push(s);
    const { port } = await s.listen(0, '127.0.0.1');
    // what Node emits when an accept fails and libuv's reserve descriptor is gone too
    const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
    expect(() => s.server.emit('error', emfile)).not.toThrow();
    expect(errors).toEqual(['accept EMFILE']);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  it('/readyz answers 503 when not ready; /healthz 503 with the liveness reason', async () => {
    const base = await serve(RELAY, { ready: false, liveness: () => Promise.resolve('spool stuck') });
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    const h = await fetch(`${base}/healthz`);
    expect([h.status, await h.text()]).toEqual([503, 'spool stuck\n']);
  });

  it('the relay framing: GET and HEAD only, charset, no-store', async () => {
    const base = await serve(RELAY);
    const r = await fetch(`${base}/healthz`);
    expect([r.headers.get('content-type'), r.headers.get('cache-control')]).toEqual([
      'text/plain; charset=utf-8',
      'no-store',
    ]);
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
  });

  it('the operator framing: every method answered, no cache-control', async () => {
    const r = await fetch(`${await serve(OPERATOR)}/healthz`, { method: 'POST' });
    expect([r.status, r.headers.get('cache-control')]).toEqual([200, null]);
  });
});
