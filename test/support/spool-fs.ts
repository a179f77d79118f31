// A spool file system for tests that count or fail some of the spool's file calls: the real one (defaultSpoolFs),
// with the calls a test names replaced and everything else passed straight through.
import { defaultSpoolFs, type SpoolFileHandle, type SpoolFs } from '../../relay/spool/spool.ts';

/**
 * defaultSpoolFs, except that each handle open() returns has the calls `handle(path, flags, fh, mode)` gives in place
 * of its own (`fh` is the real handle), and the SpoolFs calls in `over` replace the real ones.
 */
export function spoolFsWith(
  handle: (
    path: string,
    flags: string | number,
    fh: SpoolFileHandle,
    mode?: number,
  ) => Partial<SpoolFileHandle>,
  over: Partial<SpoolFs> = {},
): SpoolFs {
  return {
    ...defaultSpoolFs,
    async open(path, flags, mode) {
      const fh = await defaultSpoolFs.open(path, flags, mode);
      return withCalls(fh, handle(path, flags, fh, mode));
    },
    ...over,
  };
}

/** A handle that passes every call to `fh`, except those in `calls`. */
export function withCalls(fh: SpoolFileHandle, calls: Partial<SpoolFileHandle>): SpoolFileHandle {
  return {
    write: (d) => fh.write(d),
    writev: (d, p) => fh.writev(d, p),
    read: (b, o, l, pos) => fh.read(b, o, l, pos),
    stat: () => fh.stat(),
    chmod: (m) => fh.chmod(m),
    sync: () => fh.sync(),
    close: () => fh.close(),
    ...calls,
  };
}
