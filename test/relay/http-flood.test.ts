// A flood on the relay's HTTP listener (/metrics /healthz /readyz, on every address of the pod, so reachable from any
// pod of the cluster unless a NetworkPolicy says otherwise): connections that send half a request and then nothing.
// A real relay process whose descriptor limit is its open files plus 300 (prlimit, a container whose limit is low)
// gets 200 of them from one address and 300 from 30 more. Proves (lib/http-limits.ts):
// - at most 8 are held from one address and 64 in all; the others are closed at once;
// - meanwhile an SMTP client gets its greeting, and its message is accepted (250) and delivered;
// - a held one is closed within the headers timeout (10 s, checked every second);
// - once it is over, /healthz answers 200.
// Before: every one was held for a minute; with 500 the relay's descriptors were gone, and the SMTP client's
// connection was closed without a greeting.
import { readdir } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HTTP_LIMITS } from '../../lib/http-limits.ts';
import { run } from '../reliability/support.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  loopbackRelayArgs,
  spawnRelay,
  submit,
  tempDir,
  writeManifests,
  type RelayChild,
} from './relay-harness.ts';

interface Held {
  socket: Socket;
  openedAt: number;
  closedAt?: number;
}

/** A connection from `from` that sends half a request and then nothing. */
function halfRequest(port: number, from: string): Held {
  const socket = new Socket();
  const h: Held = { socket, openedAt: performance.now() };
  socket.on('error', () => undefined);
  socket.resume(); // reads the relay's 408, so that its close is seen
  socket.on('close', () => (h.closedAt = performance.now()));
  socket.connect({ port, host: '127.0.0.1', localAddress: from }, () => {
    socket.write('GET /metrics HTTP/1.1\r\nHost: relay\r\nX-Slow: ');
  });
  return h;
}

describe('a flood on the HTTP listener', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let relay: RelayChild;
  const flood: Held[] = [];
  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    const dir = await tempDir('http-flood');
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('flood.test', primary.port, copy.port),
    });
    relay = await spawnRelay(loopbackRelayArgs(dir, ['--retry-schedule', '1s']));
  });
  afterAll(async () => {
    for (const h of flood) h.socket.destroy();
    relay?.kill('SIGKILL');
    await primary?.close();
    await copy?.close();
  });

  it('holds at most 8 connections per address and 64 in all, closes them after the headers timeout, and SMTP goes on', async () => {
    const limit = (await readdir(`/proc/${relay.pid}/fd`)).length + 300;
    await run('prlimit', [`--pid=${relay.pid}`, `--nofile=${limit}:${limit}`]);
    const open = (hs: Held[]): Held[] => hs.filter((h) => h.closedAt === undefined);

    const one = Array.from({ length: 200 }, () => halfRequest(relay.httpPort, '127.0.0.1'));
    flood.push(...one);
    await waitFor(() => open(one).length <= HTTP_LIMITS.perAddress, {
      what: `at most ${HTTP_LIMITS.perAddress} held from one address`,
    });
    const many = Array.from({ length: 300 }, (_, i) =>
      halfRequest(relay.httpPort, `127.0.1.${1 + (i % 30)}`),
    );
    flood.push(...many);
    await waitFor(() => open(flood).length <= HTTP_LIMITS.maxConnections && open(many).length > 0, {
      what: `at most ${HTTP_LIMITS.maxConnections} held in all`,
    });
    const held = open(flood).length;
    expect(held).toBeGreaterThan(HTTP_LIMITS.perAddress); // the 30 addresses hold some too: the cap in all is met
    for (let a = 1; a <= 30; a++) {
      const from = `127.0.1.${a}`;
      const mine = open(many.filter((_, i) => 1 + (i % 30) === a));
      expect(mine.length, from).toBeLessThanOrEqual(HTTP_LIMITS.perAddress);
    }

    // SMTP during the flood
    const reply = await submit(relay.smtpPort, {
      from: 'a@origin.test',
      to: 'u@flood.test',
      subject: 'during the flood',
      text: 'x',
    });
    expect(reply).toMatch(/^250 /);
    await waitFor(() => primary.messages.length === 1 && copy.messages.length === 1, {
      what: 'the message delivered on both legs',
    });

    // every held connection ends within the headers timeout (plus the second between checks)
    await waitFor(() => open(flood).length === 0, {
      timeoutMs: HTTP_LIMITS.headersTimeoutMs + 10_000,
      what: 'every held connection closed by the relay',
    });
    const heldFor = flood
      .filter((h) => h.closedAt !== undefined && h.closedAt - h.openedAt > 1000)
      .map((h) => (h.closedAt as number) - h.openedAt);
    expect(heldFor.length).toBe(held);
    expect(Math.max(...heldFor)).toBeLessThan(HTTP_LIMITS.headersTimeoutMs + 3000);
    const health = await fetch(`http://127.0.0.1:${relay.httpPort}/healthz`);
    expect(health.status).toBe(200);
    console.log(
      `[relay] http flood: ${flood.length} connections, ${held} held, closed after ${Math.round(Math.min(...heldFor))}-${Math.round(Math.max(...heldFor))} ms`,
    );
  });
});
