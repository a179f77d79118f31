import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Procs } from './procs.ts';
import { RecipientCounter, Sink } from './sink.ts';
import { freePorts, waitForSmtp } from './smtp-client.ts';
import { LatencyProbe } from './probe.ts';
import { waitFor } from '../../test/support/wait.ts';

describe('RecipientCounter', () => {
  it('counts RCPT lines fed in arbitrary chunks, probes apart, and completed transactions', () => {
    const log =
      'smtp-sink: MAIL FROM:<a@b>\nsmtp-sink: RCPT TO:<user@bench.example>\nsmtp-sink: RCPT TO:<2user@bench.example> ORCPT=rfc822;x\n' +
      'smtp-sink: RCPT TO:<probe7@bench.example>\nsmtp-sink: DATA\nsmtp-sink: .\nsmtp-sink: RCPT TO:<known@copy.bench.example>\n';
    for (const size of [1, 7, 64, log.length]) {
      const c = new RecipientCounter();
      for (let i = 0; i < log.length; i += size) c.feed(log.slice(i, i + size));
      expect({ load: c.load, probes: c.probes, messages: c.messages }).toEqual({
        load: 3,
        probes: 1,
        messages: 1,
      });
    }
  });
});

describe('Sink with real smtp-sink and smtp-source', () => {
  const procs = new Procs();
  const dir = mkdtempSync(join(tmpdir(), 'bench-sink-test-'));
  afterAll(async () => {
    await procs.stopAllNamed('smtp-sink');
    procs.killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts every recipient smtp-source delivers, and the probe measures end-of-DATA latency', async () => {
    const [port] = await freePorts(1);
    if (port === undefined) throw new Error('no port');
    const sink = new Sink(port, join(dir, 'sink.log'));
    sink.start(procs);
    await waitForSmtp(port, 10_000);
    const src = procs.spawn(
      'smtp-source',
      ['-s', '2', '-m', '6', '-r', '3', '-l', '100', '-t', 'u@bench.example', `127.0.0.1:${port}`],
      {
        name: 'smtp-source',
      },
    );
    expect(await src.exited).toBe(0);
    const probe = new LatencyProbe(port, 4096, 0, 5);
    const result = await probe.run();
    expect(result.errors).toEqual([]);
    expect(result.samplesMs).toHaveLength(5);
    await waitFor(() => sink.poll() === 18 && sink.counter.probes === 5, {
      timeoutMs: 10_000,
      what: '18 load + 5 probe recipients',
    });
    expect(sink.counter.messages).toBe(11);
    sink.close();
  });
});
