// `mailroute relay --workers N` (relay/workers.ts), spawned for real: N processes share the SMTP port, each with its
// own spool folder; /metrics and the admin API of the primary show the whole relay; SIGTERM stops every worker and
// leaves the queue spooled; a later run with fewer workers adopts the folders of the missing ones and delivers them.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDestinations,
  httpGet,
  loopbackRelayArgs,
  metricValue,
  type RelayChild,
  spawnRelay,
  submit,
} from './relay-harness.ts';

const MESSAGES = 24;

function args(dir: string, workers: number): string[] {
  return loopbackRelayArgs(dir, [
    '--hostname',
    'relay.test',
    '--retry-schedule',
    '1s',
    '--workers',
    String(workers),
  ]);
}

function adminPortOf(child: RelayChild): number {
  const line = child.logs.find((l) => l.includes('"relay started"')) ?? '';
  const admin = (JSON.parse(line) as { admin: string }).admin;
  return Number(admin.slice(admin.lastIndexOf(':') + 1));
}

/** One message per connection, as smtp-source does: spread over the workers by the cluster's round robin. */
async function sendEach(port: number, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await submit(port, {
      from: 'sender@elsewhere.test',
      to: 'user@workers.test',
      subject: `${tag}-${i}`,
      text: 'hello',
    });
  }
}

async function queueFiles(spool: string): Promise<Map<string, number>> {
  const folders = ['.', ...(await readdir(spool)).filter((n) => /^w\d+$/.test(n))];
  const out = new Map<string, number>();
  for (const f of folders) {
    const names = await readdir(join(spool, f, 'queue')).catch(() => []);
    out.set(f, names.filter((n) => n.endsWith('.msg')).length);
  }
  return out;
}

describe('relay --workers', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let dir: string;
  const children: RelayChild[] = [];

  beforeAll(async () => {
    ({ primary, copy, dir } = await dualDestinations('workers', 'workers.test'));
  });
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.kill('SIGKILL');
    await primary?.close();
    await copy?.close();
  });

  it('2 workers: both accept and deliver; /metrics and the admin API add them up', async () => {
    const relay = await spawnRelay(args(dir, 2));
    children.push(relay);
    // Each worker writes its own log lines; its "worker started" line may reach the shared stdout after the
    // primary's "relay started" (which waits for the workers' IPC message, not for their log buffers).
    const workerStarts = (): string[] => relay.logs.filter((l) => l.includes('"relay worker started"'));
    await waitFor(() => workerStarts().length >= 2, {
      timeoutMs: 10_000,
      what: 'both workers to log their start',
    });
    expect(workerStarts()).toHaveLength(2);
    await sendEach(relay.smtpPort, MESSAGES, 'a');
    await waitFor(() => primary.messages.length >= MESSAGES && copy.messages.length >= MESSAGES, {
      what: 'both legs of every message',
    });
    expect(primary.messages).toHaveLength(MESSAGES);
    expect(copy.messages).toHaveLength(MESSAGES);
    // Both workers took connections (round robin), and logged deliveries.
    // (Their log lines may reach stdout after the peers have the messages: wait for them.)
    const workersSeen = (): Set<number | undefined> =>
      new Set(
        relay.logs
          .filter((l) => l.includes('"delivery attempt"'))
          .map((l) => (JSON.parse(l) as { worker?: number }).worker),
      );
    await waitFor(() => workersSeen().size >= 2, {
      timeoutMs: 10_000,
      what: 'delivery logs of both workers',
    });
    expect([...workersSeen()].sort()).toEqual([0, 1]);

    const m = (await httpGet(relay.httpPort, '/metrics')).body;
    expect(metricValue(m, 'mailroute_messages_accepted_total')).toBe(MESSAGES);
    expect(m).toMatch(/mailroute_routing_revision_info\{revision="[0-9a-f]{64}"\} 1\n/);
    // the accept log in use in both workers (the gauge's min over them: 1, where a sum would read 2), its writes timed
    expect(metricValue(m, 'mailroute_spool_log_active')).toBe(1);
    expect(metricValue(m, 'mailroute_spool_log_write_seconds_count')).toBeGreaterThanOrEqual(1);
    const ready = await httpGet(relay.httpPort, '/readyz');
    expect(ready.status).toBe(200);
    // /healthz asks every worker whether its spool is stuck
    expect(await httpGet(relay.httpPort, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(JSON.parse(ready.body)).toMatchObject({
      ready: true,
      checks: { routing: 'ok', spool: 'ok', accepting: 'ok' },
    });
    const stats = async (): Promise<{ messages: number; recovering: boolean }> =>
      (await (await fetch(`http://127.0.0.1:${adminPortOf(relay)}/queue/stats`)).json()) as {
        messages: number;
        recovering: boolean;
      };
    await waitFor(async () => (await stats()).messages === 0, { what: 'an empty queue' });
    expect(await stats()).toMatchObject({ messages: 0, recovering: false });

    relay.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
  });

  it('queued mail stays in both folders over SIGTERM, and a 1-worker run adopts and delivers all of it', async () => {
    await primary.down();
    await copy.down();
    const relay = await spawnRelay(args(dir, 2));
    children.push(relay);
    await sendEach(relay.smtpPort, MESSAGES, 'b');
    const admin = adminPortOf(relay);
    const list = (await (await fetch(`http://127.0.0.1:${admin}/queue`)).json()) as {
      total: number;
      messages: { id: string }[];
    };
    expect(list.total).toBe(MESSAGES);
    // One message by id through the primary, whichever worker holds it.
    const one = list.messages[MESSAGES - 1]?.id ?? '';
    expect((await fetch(`http://127.0.0.1:${admin}/queue/${one}`)).status).toBe(200);
    relay.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    const before = await queueFiles(join(dir, 'spool'));
    expect(before.get('.')).toBeGreaterThan(0);
    expect(before.get('w1')).toBeGreaterThan(0);
    expect((before.get('.') ?? 0) + (before.get('w1') ?? 0)).toBe(MESSAGES);

    await primary.up();
    await copy.up();
    const single = await spawnRelay(args(dir, 1));
    children.push(single);
    expect(single.logs.some((l) => l.includes('adopted the queue of a former worker'))).toBe(true);
    expect(JSON.parse(single.logs.find((l) => l.includes('"relay started"')) ?? '{}')).toMatchObject({
      queued: MESSAGES,
    });
    const token = (await readFile(join(dir, 'spool', 'admin.token'), 'utf8')).trim();
    const flushed = await fetch(`http://127.0.0.1:${adminPortOf(single)}/queue/flush`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(flushed.status).toBe(202);
    await waitFor(() => primary.messages.length >= 2 * MESSAGES && copy.messages.length >= 2 * MESSAGES, {
      what: 'the adopted messages on both legs',
      timeoutMs: 20_000,
    });
    const after = await queueFiles(join(dir, 'spool'));
    await waitFor(async () => ((await queueFiles(join(dir, 'spool'))).get('.') ?? 1) === 0, {
      what: 'an empty spool',
    });
    expect(after.get('w1')).toBe(0);
    single.kill('SIGTERM');
    expect(await single.exited).toBe(0);
  });
});
