import { describe, expect, it } from 'vitest';
import { assertPatched } from './patch-check.ts';

describe('assertPatched', () => {
  it('passes with nothing missing', () => {
    expect(() => assertPatched('pkg', 'patches/pkg+1.0.0.patch', [])).not.toThrow();
  });

  it('names the package, every missing behaviour and how to apply the patch', () => {
    expect(() => assertPatched('pkg', 'patches/pkg+1.0.0.patch', ['a', 'b'])).toThrow(
      'pkg is not patched (missing: a; b): apply patches/pkg+1.0.0.patch with `npx patch-package --error-on-fail`',
    );
  });
});
