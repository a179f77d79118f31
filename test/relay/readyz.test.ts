// /readyz of a real relay (startRelay) under requests that overlap, as a kubelet probe and a scrape or a second probe
// do: each check of the spool writes and removes a probe file, and two at once used one name (`.readyz-<pid>`), so one
// removed the other's file and answered 503 "spool ... not writable: ENOENT" (296 of 600 paired requests in the audit;
// with one other client looping, the kubelet's probe failed up to 15 times in a row, and the chart gives up after 3).
import { request } from 'node:http';
import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

let r: InProcessRelay;
let old: SmtpPeer;
let neu: SmtpPeer;

beforeAll(async () => {
  old = await startSmtpPeer('old');
  neu = await startSmtpPeer('new');
  r = await startRelay({ 'd.yaml': dualDomain('managed.test', old.port, neu.port) });
});
afterAll(async () => {
  await r?.close();
  await Promise.all([old?.close(), neu?.close()]);
});

/** The status of one GET on a fresh connection (no keep-alive), -1 when the request failed. */
const status = (port: number, path: string): Promise<number> =>
  new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(-1));
    req.end();
  });

describe('/readyz', () => {
  it('overlapping requests all answer 200, and no probe file is left in the spool', async () => {
    const port = r.relay.http.port;
    const codes: number[] = [];
    for (let i = 0; i < 100; i++) {
      codes.push(...(await Promise.all([status(port, '/readyz'), status(port, '/readyz')])));
    }
    // and a burst of 20 at once
    codes.push(...(await Promise.all(Array.from({ length: 20 }, () => status(port, '/readyz')))));
    expect(codes).toHaveLength(220);
    expect(codes.filter((c) => c !== 200)).toEqual([]);
    expect((await readdir(r.spoolDir)).filter((f) => f.startsWith('.readyz'))).toEqual([]);
  });
});
