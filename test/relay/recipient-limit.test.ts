// A message to many recipients against servers that limit recipients per transaction, as the large providers do
// (Gmail's MX answers 452 4.5.3 past 100 RCPT TO; an older server 552 5.5.3). A real relay (runRelay) with the retry
// schedule at 10 minutes, fed by nodemailer, delivering to smtp-server peers that enforce a limit per transaction.
// Before maxRecipientsPerTransaction every leg to one server went in one transaction: the recipients past a server's
// limit waited for the retry schedule (each retry placing one more batch), and a 552 bounced them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  domainManifests,
  httpGet,
  metricValue,
  queuedId,
  queuedView,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

/** A server that takes at most `limit` recipients per transaction and refuses the rest with `reply`. */
const limited = (name: string, limit: number, reply: { code: number; message: string }) =>
  startSmtpPeer(name, { rcpt: (_, accepted) => (accepted >= limit ? reply : undefined) });

const GMAIL_452 = {
  code: 452,
  message:
    '4.5.3 Your message has too many recipients. For more information regarding our sending limits, see the help page',
};
const OLD_552 = { code: 552, message: '5.5.3 Too many recipients' };

describe('recipients per transaction', () => {
  let gmail: SmtpPeer;
  let legacy: SmtpPeer;
  let full: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    gmail = await limited('gmail', 100, GMAIL_452);
    legacy = await limited('legacy', 20, OLD_552);
    full = await limited('full', 0, GMAIL_452);
    r = await startRelay(
      {
        // old: the default limit (50), under the server's 100; new: 100 declared, over the server's 20
        'big.yaml': domainManifests({
          domain: 'big.test',
          servers: [
            `name: old, host: 127.0.0.1, port: ${gmail.port}, tls: None`,
            `name: new, host: 127.0.0.1, port: ${legacy.port}, tls: None, maxRecipientsPerTransaction: 100`,
          ],
          policy:
            '  mode: Dual\n  primary: old\n  secondary: new\n  dual:\n    scope: All\n    bounces: Notify\n',
        }),
        // a server that takes no recipient at all, whatever the count
        'none.yaml': domainManifests({
          domain: 'none.test',
          servers: [`name: full, host: 127.0.0.1, port: ${full.port}, tls: None`],
          policy: '  mode: Direct\n  primary: full\n',
        }),
      },
      ['--retry-schedule', '10m'],
    );
  });
  afterAll(async () => {
    await r?.close();
    await Promise.all([gmail?.close(), legacy?.close(), full?.close()]);
  });

  const metric = async (labels: string): Promise<number> =>
    metricValue((await httpGet(r.relay.http.port, '/metrics')).body, 'mailroute_deliveries_total', labels) ??
    0;

  it('120 recipients: every copy on both servers at once, in transactions each server takes, none refused for good', async () => {
    const to = Array.from({ length: 120 }, (_, i) => `user${i}@big.test`);
    const reply = await submit(r.relay.smtp.port, {
      from: 'alice@sender.example',
      to,
      subject: 'all hands',
      text: 'hello everyone',
    });
    const id = queuedId(reply);
    const got = (p: SmtpPeer): string[] => p.messages.flatMap((m) => m.rcptTo);
    // the retry schedule is 10 minutes: only a next transaction made at once delivers them all within the wait
    await waitFor(() => got(gmail).length === 120 && got(legacy).length === 120, {
      what: 'all 120 recipients on both servers',
      timeoutMs: 20_000,
    });
    expect(new Set(got(gmail))).toEqual(new Set(to));
    expect(new Set(got(legacy))).toEqual(new Set(to)); // no copyRecipientDomain: the same addresses
    expect(got(gmail)).toHaveLength(120); // each once
    expect(got(legacy)).toHaveLength(120);
    // the default limit kept the primary's transactions at 50: it never had to refuse one
    expect(gmail.messages.map((m) => m.rcptTo.length).sort((a, b) => a - b)).toEqual([20, 50, 50]);
    expect(gmail.rcpts.filter((x) => x.code !== 250)).toEqual([]);
    // the secondary took 20 per transaction and refused the rest with 552 5.5.3, each time
    expect(legacy.messages.every((m) => m.rcptTo.length <= 20)).toBe(true);
    expect(legacy.rcpts.filter((x) => x.code === 552).length).toBeGreaterThan(0);
    await waitFor(async () => (await queuedView(r, id)) === undefined, { what: 'message removed' });
    expect(await metric('{server="old",leg="primary",result="delivered"}')).toBe(120);
    expect(await metric('{server="new",leg="copy",result="delivered"}')).toBe(120);
    expect(await metric('{server="new",leg="copy",result="failed"}')).toBe(0);
    expect(await metric('{server="new",leg="copy",result="deferred"}')).toBeGreaterThan(0);
  });

  it('a server that takes no recipient: deferred on the schedule, no loop of transactions', async () => {
    const to = ['a@none.test', 'b@none.test', 'c@none.test'];
    const id = queuedId(
      await submit(r.relay.smtp.port, { from: 'alice@sender.example', to, subject: 'none', text: 'x' }),
    );
    const view = await waitFor(
      async () => {
        const v = await queuedView(r, id);
        return v?.recipients.every((x) => x.legs.every((l) => l.state === 'deferred')) === true
          ? v
          : undefined;
      },
      { what: 'every leg deferred' },
    );
    const now = Date.now();
    for (const leg of view.recipients.flatMap((x) => x.legs)) {
      expect(leg.attempts).toBe(1);
      expect(leg.lastReply).toMatch(/^452 4\.5\.3/);
      // on the retry schedule (10 minutes), not at once
      expect(Date.parse(leg.nextAttemptAt ?? '') - now).toBeGreaterThan(9 * 60_000);
    }
    expect(full.rcpts.map((x) => x.code)).toEqual([452, 452, 452]);
    expect(full.messages).toEqual([]);
  });
});
