// freePort() hands out ports outside the kernel's ephemeral range, from a block of its own per test worker, so that no
// listen(0) and no outgoing connection of a test running beside it can take a port between freePort() and its bind.
import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, PORT_RANGE, portBlock } from './net.ts';

const listen = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
const close = (s: Server): Promise<void> => new Promise((resolve) => s.close(() => resolve()));

describe('portBlock', () => {
  it.each([
    [0, 12_000, 12_499],
    [1, 12_500, 12_999],
    [35, 29_500, 29_999],
    [36, 12_000, 12_499],
    [-1, 29_500, 29_999],
    [123_456, 12_000 + (123_456 % 36) * 500, 12_000 + (123_456 % 36) * 500 + 499],
  ])('worker %i gets %i-%i', (worker, first, last) => {
    expect(portBlock(worker)).toEqual({ first, last });
  });

  it('keeps every block below the ephemeral range and the NodePort range', () => {
    for (let w = 0; w < PORT_RANGE.blocks; w++) {
      const { first, last } = portBlock(w);
      expect(first).toBeGreaterThanOrEqual(12_000);
      expect(last).toBeLessThan(30_000);
    }
  });
});

describe('freePort', () => {
  it('hands out distinct ports of one block, each of which can be bound', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 5; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(5);
    const blocks = new Set(ports.map((p) => Math.floor((p - PORT_RANGE.first) / PORT_RANGE.blockSize)));
    expect(blocks.size).toBe(1);
    for (const p of ports) await close(await listen(p));
  });

  it('skips a port that is in use', async () => {
    const held: Server[] = [];
    try {
      // hold the next few ports of the block: the following freePort() must not return any of them
      const probe = await freePort();
      const { last, first } = portBlock(Math.floor((probe - PORT_RANGE.first) / PORT_RANGE.blockSize));
      const heldPorts: number[] = [];
      for (let p = probe + 1, n = 0; n < 3; p = p >= last ? first : p + 1, n++) {
        // a port someone else holds already is just as much in use
        const s = await listen(p).catch(() => undefined);
        if (s) held.push(s);
        heldPorts.push(p);
      }
      const got = await freePort();
      expect(heldPorts).not.toContain(got);
      expect(got).not.toBe(probe);
    } finally {
      for (const s of held) await close(s);
    }
  });
});
