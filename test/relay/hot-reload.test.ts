// Hot reload of the manifests folder: a change is served within 2 s (seen at /metrics and /readyz), mail after it
// routes the new way, mail accepted before keeps its plan, and an invalid change keeps the last good table.
import { execFileSync } from 'node:child_process';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, httpGet, type InProcessRelay, startRelay, submit } from './relay-harness.ts';

describe('hot reload', () => {
  let a: SmtpPeer;
  let b: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    a = await startSmtpPeer('a');
    b = await startSmtpPeer('b');
    r = await startRelay({ 'hot.yaml': dualDomain('hot.test', a.port, b.port, { mode: 'Direct' }) });
  });
  afterAll(async () => {
    await r?.close();
    await a?.close();
    await b?.close();
  });

  const send = async (to: string, subject: string): Promise<void> => {
    await submit(r.relay.smtp.port, { from: 's@origin.test', to, subject, text: subject });
  };
  const revisionAtMetrics = async (): Promise<string | undefined> =>
    /mailroute_routing_revision_info\{revision="([0-9a-f]{64})"\} 1/.exec(
      (await httpGet(r.relay.http.port, '/metrics')).body,
    )?.[1];
  const has = (peer: SmtpPeer, rcpt: string, subject: string) => () =>
    peer.for(rcpt).some((m) => m.raw.toString().includes(`Subject: ${subject}`));

  it('swaps within 2 s; mail accepted before keeps its plan; an invalid change keeps the last good table', async () => {
    const rev0 = await revisionAtMetrics();
    expect(rev0).toMatch(/^[0-9a-f]{64}$/);
    // Mail accepted under revision 0 routes to a; a is down so it stays queued across the change.
    await a.down();
    await send('x@hot.test', 'before');
    // Direct to b (server "new") from now on
    const changedAt = Date.now();
    await writeFile(
      join(r.manifests, 'hot.yaml'),
      dualDomain('hot.test', a.port, b.port, { mode: 'Direct' }).replace('primary: old', 'primary: new'),
    );
    const rev1 = await waitFor(
      async () => {
        const rev = await revisionAtMetrics();
        return rev !== rev0 ? rev : undefined;
      },
      { timeoutMs: 5000, what: 'the new revision at /metrics' },
    );
    expect(Date.now() - changedAt).toBeLessThan(2500);
    const ready = JSON.parse((await httpGet(r.relay.http.port, '/readyz')).body) as { revision: string };
    expect(ready.revision).toBe(rev1);
    // Mail after the change goes to b.
    await send('nobody@hot.test', 'after');
    await waitFor(has(b, 'nobody@hot.test', 'after'), { what: 'mail after the change on b' });
    // The earlier message keeps its plan: a (not b) once a is back.
    await a.up();
    r.relay.delivery.flush();
    await waitFor(has(a, 'x@hot.test', 'before'), { what: 'mail before the change on a' });
    expect(b.for('x@hot.test')).toEqual([]);

    // An invalid change (schema error) keeps rev1 and is reported by /readyz, which stays ready.
    await writeFile(
      join(r.manifests, 'hot.yaml'),
      'apiVersion: mailroute.io/v1alpha1\nkind: MailDomain\nmetadata: {name: broken}\nspec:\n  domain: hot.test\n  servers: []\n',
    );
    const err = await waitFor(
      async () => {
        const res = await httpGet(r.relay.http.port, '/readyz');
        const body = JSON.parse(res.body) as { lastError: { errors: string[] } | null; revision: string };
        return body.lastError ? { res, body } : undefined;
      },
      { timeoutMs: 5000, what: 'the invalid change to be reported' },
    );
    expect(err.res.status).toBe(200);
    expect(err.body.revision).toBe(rev1);
    expect(err.body.lastError?.errors.join('\n')).toMatch(/hot\.yaml/);
    expect(await revisionAtMetrics()).toBe(rev1);
    await send('nobody@hot.test', 'still');
    await waitFor(has(b, 'nobody@hot.test', 'still'), { what: 'mail still routed by the last good table' });
  });

  it('a named pipe dropped into the folder is reported, and the next valid change is still served', async () => {
    // Before, reading the pipe waited for a writer forever: that reload never ended and no later change was served.
    const rev0 = await revisionAtMetrics();
    execFileSync('mkfifo', [join(r.manifests, 'pipe.yaml')]);
    const err = await waitFor(
      async () => {
        const body = JSON.parse((await httpGet(r.relay.http.port, '/readyz')).body) as {
          lastError: { errors: string[] } | null;
        };
        const text = body.lastError?.errors.join('\n') ?? '';
        return text.includes('pipe.yaml') ? text : undefined;
      },
      { timeoutMs: 5000, what: 'the named pipe to be reported' },
    );
    expect(err).toMatch(/a named pipe, not a manifest file/);
    expect(await revisionAtMetrics()).toBe(rev0);
    await unlink(join(r.manifests, 'pipe.yaml'));
    await writeFile(
      join(r.manifests, 'hot.yaml'),
      dualDomain('hot.test', a.port, b.port, { mode: 'Direct' }),
    );
    await waitFor(async () => ((await revisionAtMetrics()) !== rev0 ? true : undefined), {
      timeoutMs: 5000,
      what: 'the valid change after the pipe',
    });
    await send('again@hot.test', 'after-pipe');
    await waitFor(has(a, 'again@hot.test', 'after-pipe'), {
      what: 'mail routed by the change after the pipe',
    });
  });
});

describe('readiness', () => {
  it('/readyz is 503 without a routing table (MAIL gets 451), and 200 once a valid folder appears', async () => {
    const r = await startRelay({ 'bad.yaml': 'kind: [' });
    try {
      const first = await httpGet(r.relay.http.port, '/readyz');
      expect(first.status).toBe(503);
      expect(JSON.parse(first.body)).toMatchObject({
        ready: false,
        checks: {
          routing: expect.stringMatching(/no routing table loaded: .*bad\.yaml/) as unknown,
          spool: 'ok',
        },
      });
      expect((await httpGet(r.relay.http.port, '/healthz')).status).toBe(200);
      const { RawSmtp } = await import('./raw-client.ts');
      const c = await RawSmtp.connect(r.relay.smtp.port);
      await c.reply();
      await c.cmd('EHLO client.test');
      expect(await c.cmd('MAIL FROM:<a@origin.test>')).toMatch(/^451 4\.3\.0 /);
      c.close();
      await writeFile(join(r.manifests, 'bad.yaml'), dualDomain('ready.test', 1, 1, { mode: 'Direct' }));
      await waitFor(async () => (await httpGet(r.relay.http.port, '/readyz')).status === 200, {
        timeoutMs: 3000,
        what: '/readyz 200',
      });
    } finally {
      await r.close();
    }
  });
});
