// Slowloris over real sockets against the real inbound server and spool. Before the fix the idle timer
// restarted on every byte, so a client trickling one byte at a time held its slot forever, and a table full of such
// clients answered everyone else "421 Too many connected clients".
import type { Socket } from 'node:net';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../support/clock.ts';
import { waitFor } from '../support/wait.ts';
import { directDomain, startInbound, type InboundHarness } from './inbound-harness.ts';
import { RawSmtp, code } from './raw-client.ts';

const MANIFESTS = directDomain('example.com', '127.0.0.1', 1);

/** Writes `text` one byte every `everyMs` (cycling), until the socket closes or stop() is called. */
function trickle(c: RawSmtp, text: string, everyMs: number): { stop(): void } {
  let i = 0;
  const t = setInterval(() => {
    if (c.isClosed) return clearInterval(t);
    c.write(text[i++ % text.length] ?? 'x');
  }, everyMs);
  return { stop: () => clearInterval(t) };
}

async function greeted(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  expect(code(await c.reply())).toBe(220);
  return c;
}

async function sendMail(port: number, subject: string): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    return (await t.sendMail({ from: 's@origin.test', to: 'bob@example.com', subject, text: 'hi' })).response;
  } finally {
    t.close();
  }
}

/** The value of the mailroute_smtp_stress gauge. */
async function stressGauge(h: InboundHarness): Promise<number | undefined> {
  const g = await h.metrics.stress.get();
  return g.values[0]?.value;
}

/** A table of 4 (under stress from 3 connections), a one-minute idle timeout, and the given stress timeout. */
const stressTable = (stressTimeoutMs: number, sweepIntervalMs: number) => ({
  maxConnections: 4,
  maxConnectionsPerIp: 100,
  idleTimeoutMs: 60_000,
  stressTimeoutMs,
  sweepIntervalMs,
});

/** The server side of each open connection: the socket the idle timer runs on (smtp-server internals). */
const serverSockets = (h: InboundHarness): { listenerCount(event: string): number }[] =>
  [...(h.inbound.server as unknown as { connections: Set<{ _socket: Socket }> }).connections].map(
    (c) => c._socket,
  );

describe('slow and idle clients', () => {
  let h: InboundHarness | undefined;
  const open: RawSmtp[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await h?.close();
    h = undefined;
  });
  /** A greeted connection, closed after the test. */
  const connected = async (port: number): Promise<RawSmtp> => {
    const c = await greeted(port);
    open.push(c);
    return c;
  };
  /** A connection, closed after the test, that has sent one message with `subject` (250) and stays connected. */
  const mailed = async (port: number, subject: string): Promise<RawSmtp> => {
    const c = await RawSmtp.connect(port);
    open.push(c);
    await c.begin('a@origin.test', ['bob@example.com']);
    expect(code(await c.cmd('DATA'))).toBe(354);
    c.write(`Subject: ${subject}\r\n\r\nhi\r\n.\r\n`);
    expect(await c.reply()).toMatch(/^250 /);
    return c;
  };
  /** The limits of the two timeout tests: a 1.5 s command line, 4 s idle, a 100 ms sweep, no stress. */
  const timeouts = {
    idleTimeoutMs: 4000,
    commandTimeoutMs: 1500,
    sweepIntervalMs: 100,
    stressTimeoutMs: 60_000,
  };

  it('a client trickling one byte at a time is disconnected once its command line is older than --command-timeout', async () => {
    h = await startInbound(MANIFESTS, timeouts);
    const c = await connected(h.port);
    const started = Date.now();
    const t = trickle(c, 'EHLO slow.example', 200);
    const reply = await c.reply(8000);
    t.stop();
    const heldMs = Date.now() - started;
    expect(reply).toBe('421 4.4.2 Command line not completed in time, closing connection');
    await waitFor(() => c.isClosed, { what: 'the trickler disconnected' });
    // the bound: command timeout + one sweep + slack; the idle timer (4 s) never fired, bytes kept coming
    expect(heldMs).toBeGreaterThanOrEqual(1400);
    expect(heldMs).toBeLessThan(3500);
  });

  it('a client sending complete lines slowly is disconnected after --session-timeout', async () => {
    h = await startInbound(MANIFESTS, { ...timeouts, sessionTimeoutMs: 2500 });
    const c = await connected(h.port);
    const started = Date.now();
    let last = '';
    while (!c.isClosed && Date.now() - started < 8000) {
      c.write('NOOP\r\n');
      last = await c.reply(3000);
      if (!last.startsWith('250')) break;
    }
    expect(last).toBe('421 4.4.2 Session too long, closing connection');
    expect(Date.now() - started).toBeLessThan(4500);
  });

  it('a step of the wall clock (an hour forward: NTP, a VM resumed) ends no session: sessions and command lines are aged on the monotonic clock', async () => {
    fakeWallClock();
    try {
      h = await startInbound(MANIFESTS, { ...timeouts, sessionTimeoutMs: 60_000 });
      const before = await connected(h.port);
      stepWallClock(3600_000);
      // the sweep runs on after the step: a trickler connected now is cut at the command timeout, not at once
      const trickler = await connected(h.port);
      const started = performance.now();
      const t = trickle(trickler, 'EHLO slow.example', 200);
      const reply = await trickler.reply(8000);
      t.stop();
      expect(reply).toBe('421 4.4.2 Command line not completed in time, closing connection');
      expect(performance.now() - started).toBeGreaterThanOrEqual(1400);
      // the session opened before the step, an hour old on the wall clock, was swept a dozen times since: still served
      expect(code(await before.cmd('NOOP'))).toBe(250);
    } finally {
      restoreWallClock();
    }
  });

  it('with the table full of idle tricklers, a real client still sends mail (the oldest idle one is evicted); a client that sent mail keeps its slot', async () => {
    const max = 6;
    h = await startInbound(MANIFESTS, {
      maxConnections: max,
      maxConnectionsPerIp: 100,
      idleTimeoutMs: 60_000,
      commandTimeoutMs: 60_000,
      stressTimeoutMs: 60_000,
      sweepIntervalMs: 100,
    });
    // a mailer that sent one message and stays connected
    const mailer = await mailed(h.port, 'kept');
    // fill the rest of the table with tricklers (one byte every 500 ms: the idle timer never fires)
    const tricklers: RawSmtp[] = [];
    for (let i = 1; i < max; i++) {
      const c = await connected(h.port);
      tricklers.push(c);
      trickle(c, 'EHLO trickle.example', 500);
    }
    await waitFor(() => h!.inbound.connections === max, { what: 'a full table' });
    // a connection is evictable once it is 1 s old (a burst of newcomers does not evict itself)
    const filledAt = Date.now();
    await waitFor(() => Date.now() - filledAt > 1000, { what: 'the tricklers 1 s old', intervalMs: 100 });
    // before the fix: 421 Too many connected clients
    // three clients that stay connected after their message: each takes the slot of the oldest trickler
    for (let i = 0; i < 3; i++) await mailed(h.port, `through-${i}`);
    // and nodemailer (before the fix: 421 Too many connected clients)
    expect(await sendMail(h.port, 'through-3')).toMatch(/^250 /);
    // four tricklers, the oldest first, were closed with a 421; the mailer and the newest trickler were not
    await waitFor(() => tricklers.filter((c) => c.isClosed).length >= 4, { what: '4 tricklers evicted' });
    expect(tricklers.map((c) => c.isClosed)).toEqual([true, true, true, true, false]);
    expect(code(await mailer.cmd('NOOP'))).toBe(250);
    const subjects = (await h.spooled()).map((m) => /Subject: (\S+)/.exec(m.body.toString())?.[1]).sort();
    expect(subjects).toEqual(['kept', 'through-0', 'through-1', 'through-2', 'through-3']);
  });

  it('when nobody can be evicted (all sent mail), a new client gets 421 4.7.0', async () => {
    const max = 2;
    h = await startInbound(MANIFESTS, {
      maxConnections: max,
      maxConnectionsPerIp: 100,
      stressTimeoutMs: 60_000,
    });
    for (let i = 0; i < max; i++) await mailed(h.port, `m${i}`);
    const late = await RawSmtp.connect(h.port);
    open.push(late);
    expect(await late.reply()).toBe('421 4.7.0 Too many connected clients, try again in a moment');
  });

  it('under stress (3/4 of the table in use) idle clients get the short --stress-timeout', async () => {
    h = await startInbound(MANIFESTS, stressTable(1000, 100));
    const idle: RawSmtp[] = [];
    for (let i = 0; i < 3; i++) idle.push(await connected(h.port));
    const started = Date.now();
    await waitFor(() => idle.every((c) => c.isClosed), { what: 'idle clients closed', timeoutMs: 5000 });
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => !h!.inbound.stressed, { what: 'stress over' });
  });

  it('when stress ends, a client idle since it began keeps the short timeout; one that sends a command gets the long one back', async () => {
    // Before the fix, the end of stress re-armed every connection with --idle-timeout: the first idle clients
    // closed under stress could end it, and the others, idle as long, were then kept for a minute (seen in CI).
    h = await startInbound(MANIFESTS, stressTable(1500, 50));
    const idle = await connected(h.port);
    const active = await connected(h.port);
    const leaver = await connected(h.port);
    await waitFor(() => h!.inbound.stressed, { what: 'under stress (3 of 4)' });
    expect(await stressGauge(h)).toBe(1);
    expect(code(await leaver.cmd('QUIT'))).toBe(221);
    await waitFor(() => !h!.inbound.stressed, { what: 'stress over (2 of 4)' });
    expect(await stressGauge(h)).toBe(0);
    expect(code(await active.cmd('NOOP'))).toBe(250);
    const activeAt = Date.now();
    expect(await idle.reply(5000)).toMatch(/^421 /);
    await waitFor(() => idle.isClosed, { what: 'the idle client closed' });
    // the active client's timer is the long one again: still open well past the stress timeout
    await waitFor(() => Date.now() - activeAt > 2500, { what: 'past the stress timeout', intervalMs: 100 });
    expect(active.isClosed).toBe(false);
    expect(code(await active.cmd('NOOP'))).toBe(250);
  });

  it('a client flapping the table in and out of stress adds no timer listeners to the others; they still close once, at the stress timeout', async () => {
    // Before the fix, each flip re-armed every connection through smtp-server's _armTimeout(), which adds a
    // 'timeout' listener per call: after a few flips an idle connection had several, and all of them ran at once.
    h = await startInbound(MANIFESTS, stressTable(1500, 50));
    const idle = [await connected(h.port), await connected(h.port)];
    const dataListeners = serverSockets(h).map((s) => s.listenerCount('data'));
    for (let i = 0; i < 3; i++) {
      const flapper = await connected(h.port);
      await waitFor(() => h!.inbound.stressed, { what: `under stress (flip ${i + 1})` });
      expect(code(await flapper.cmd('QUIT'))).toBe(221);
      await waitFor(() => !h!.inbound.stressed, { what: `stress over (flip ${i + 1})` });
    }
    const sockets = serverSockets(h);
    expect(sockets).toHaveLength(2);
    expect(sockets.map((s) => s.listenerCount('timeout'))).toEqual([1, 1]);
    // at most one listener waiting for the client's next bytes, however many flips there were
    expect(sockets.map((s) => s.listenerCount('data'))).toEqual(dataListeners.map((n) => n + 1));
    for (const c of idle) expect(await c.reply(5000)).toMatch(/^421 /);
    await waitFor(() => idle.every((c) => c.isClosed), { what: 'the idle clients closed' });
  });
});
