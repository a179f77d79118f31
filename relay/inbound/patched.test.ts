import { SMTPServer } from 'smtp-server';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { describe, expect, it } from 'vitest';
import { assertSmtpServerPatched, smtpServerPatchProblems } from './patched.ts';

describe('smtp-server patch self-check', () => {
  it('finds every patched behaviour the relay relies on (greeting delay, enhanced codes, A-labels, line timing, end-of-DATA search)', () => {
    expect(smtpServerPatchProblems()).toEqual([]);
    expect(() => assertSmtpServerPatched()).not.toThrow();
  });

  it("names the earlier patch's line timing on the wall clock, which the sweep's monotonic ages cannot be compared with", () => {
    const proto = SMTPStream.prototype as unknown as { _write: unknown };
    const patched = proto._write;
    const earlier = String(patched).replace(
      'lineStartedAt = performance.now()',
      'lineStartedAt = Date.now()',
    );
    expect(earlier).not.toBe(String(patched));
    proto._write = { toString: () => earlier };
    try {
      expect(smtpServerPatchProblems()).toEqual(['SMTPStream.lineStartedAt on the monotonic clock']);
    } finally {
      proto._write = patched;
    }
  });

  it('names the escape-dot patch when the parser writes and waits a turn per escape dot', () => {
    const proto = SMTPStream.prototype as unknown as { _feedDataStream: unknown };
    const patched = proto._feedDataStream;
    const perDot = String(patched).replace(
      'outLen += chunk.copy(out, outLen, from, i)',
      'dataStream.write(chunk.subarray(0, i))',
    );
    expect(perDot).not.toBe(String(patched));
    proto._feedDataStream = { toString: () => perDot };
    try {
      expect(smtpServerPatchProblems()).toEqual([
        'SMTPStream cuts the escape dots of a chunk out in one pass',
      ]);
    } finally {
      proto._feedDataStream = patched;
    }
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
