import { SMTPServer } from 'smtp-server';
import { describe, expect, it } from 'vitest';
import { assertSmtpServerPatched, smtpServerPatchProblems } from './patched.ts';

describe('smtp-server patch self-check', () => {
  it('finds every patched behaviour the relay relies on (greeting delay, enhanced codes, A-labels, line timing, end-of-DATA search)', () => {
    expect(smtpServerPatchProblems()).toEqual([]);
    expect(() => assertSmtpServerPatched()).not.toThrow();
  });

  it('gives every connection its own id of 16 base32 characters, across several pools of random bytes', async () => {
    const server = new SMTPServer({ logger: false });
    const handleProxy = (
      server as unknown as {
        _handleProxy: (socket: object, cb: (err: Error | null, o: { id: string }) => void) => void;
      }
    )._handleProxy.bind(server);
    const ids = await Promise.all(
      Array.from(
        { length: 300 },
        () =>
          new Promise<string>((resolve, reject) =>
            handleProxy({ remoteAddress: '192.0.2.1' }, (err, o) => (err ? reject(err) : resolve(o.id))),
          ),
      ),
    );
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[0-9a-v]{16}$/);
  });
});
