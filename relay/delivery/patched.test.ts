import { Transform, type TransformCallback } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { assertNodemailerPatched, nodemailerPatchProblems } from './patched.ts';

/** nodemailer 10.6.1's encoder as shipped, in its shape: a per-byte loop, then the final dot line in a push of its own. */
class Unpatched extends Transform {
  private lastByte: number | false = false;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out: number[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] ?? 0;
      const prev = i ? chunk[i - 1] : this.lastByte;
      if (prev === 0x0d && byte !== 0x0a) out.push(0x0a);
      else if (byte === 0x0a && prev !== 0x0d) out.push(0x0d);
      if (byte === 0x2e && (prev === 0x0a || prev === false)) out.push(0x2e);
      out.push(byte);
    }
    this.lastByte = chunk[chunk.length - 1] ?? this.lastByte;
    this.push(Buffer.from(out));
    done();
  }
  override _flush(done: TransformCallback): void {
    this.push(Buffer.from(this.lastByte === 0x0a ? '.\r\n' : '\r\n.\r\n'));
    done();
  }
}

/** An encoder that forgets to stuff dots: the probe must see the wrong bytes, not only the missing speed-up. */
class NoStuffing extends Transform {
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.push(chunk);
    done();
  }
  override _flush(done: TransformCallback): void {
    this.push(Buffer.from('\r\n.\r\n'));
    done();
  }
}

/** The patch before large chunks went on uncopied: it holds the last chunk and copies it into the dot line's write. */
class ConcatAlways extends Transform {
  private held: Buffer | null = null;
  // (a stand-in for the indexOf search, by the name the self-check looks for; these inputs have nothing to stuff)
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const nextDot = chunk.indexOf(0x2e);
    if (this.held) this.push(this.held);
    this.held =
      nextDot === -1 ? chunk : Buffer.from(chunk.toString('latin1').replace('\n.', '\r\n..'), 'latin1');
    done();
  }
  override _flush(done: TransformCallback): void {
    this.push(Buffer.concat([this.held ?? Buffer.alloc(0), Buffer.from('\r\n.\r\n')]));
    done();
  }
}

describe('nodemailer patch self-check', () => {
  it('finds every patched behaviour in the installed nodemailer', () => {
    expect(nodemailerPatchProblems()).toEqual([]);
    expect(() => assertNodemailerPatched()).not.toThrow();
  });

  it('reports the unpatched encoder: no indexOf search, and the dot line in a write of its own', () => {
    expect(nodemailerPatchProblems(Unpatched)).toEqual([
      'DATA encoder search by Buffer.indexOf',
      'DATA encoder sends the last chunk and the final dot line in one write',
      'DATA encoder sends a large last chunk uncopied, then the final dot line',
      'DATA encoder encodes a whole body in one call (DataStream.encode)',
    ]);
  });

  it('reports a client that pipes every body through the encoder stream', () => {
    const unpatchedClient = { prototype: { send(): void {} } };
    expect(nodemailerPatchProblems(undefined, unpatchedClient)).toEqual([
      'SMTP client writes a body held in memory in one call',
    ]);
  });

  it('reports the earlier patch, which copied a large last chunk into the final write', () => {
    expect(nodemailerPatchProblems(ConcatAlways)).toEqual([
      'DATA encoder sends a large last chunk uncopied, then the final dot line',
      'DATA encoder encodes a whole body in one call (DataStream.encode)',
    ]);
  });

  it('reports an encoder whose bytes are wrong', () => {
    expect(nodemailerPatchProblems(NoStuffing)).toContain('DATA encoder output (dot-stuffing, line ends)');
  });
});
