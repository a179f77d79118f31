import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listenOn } from './listen.ts';

const open: ReturnType<typeof createServer>[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

describe('listenOn', () => {
  it('rejects with the bind error (a port in use)', async () => {
    const first = createServer();
    open.push(first);
    const { port } = await listenOn(first, 0, '127.0.0.1', () => undefined);
    const second = createServer();
    open.push(second);
    await expect(listenOn(second, port, '127.0.0.1', () => undefined)).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });

  it('once listening, an error of the listener (EMFILE on accept) goes to onError, is not thrown, and it still accepts', async () => {
    const errors: string[] = [];
    const s = createServer((c) => c.end('hello\n'));
    open.push(s);
    const { port, host } = await listenOn(s, 0, '127.0.0.1', (err) => errors.push(err.message));
    expect(host).toBe('127.0.0.1');
    // what Node emits when an accept fails and libuv's spare descriptor is gone too
    const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
    expect(() => s.emit('error', emfile)).not.toThrow();
    expect(errors).toEqual(['accept EMFILE']);
    const { connect } = await import('node:net');
    const got = await new Promise<string>((resolve, reject) => {
      const c = connect(port, '127.0.0.1');
      let text = '';
      c.on('data', (d: Buffer) => (text += d.toString()));
      c.on('end', () => resolve(text));
      c.on('error', reject);
    });
    expect(got).toBe('hello\n');
  });
});
