// Change detection for file-based sources: fs.watch for speed, a periodic stat fingerprint as the fallback that
// always works (editors that replace files, ConfigMap symlink swaps, file systems without inotify). A change is
// reported after a short debounce, at most once per poll interval, never concurrently.
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { listManifestFiles } from '../../lib/manifests.ts';
import { safeDelay } from '../../routing/timer.ts';

export interface WatchOptions {
  /** A folder of manifests (listed as lib/manifests.ts reads it) or a single file. */
  path: string;
  debounceMs?: number;
  pollMs?: number;
}

/**
 * A stat fingerprint: for a folder, the manifest files lib/manifests.ts would read (path, inode, size, mtime) and
 * what it could not list (a pipe dropped in, a loop), so a reload reports it; '' when the path is missing.
 */
export async function fingerprint(path: string): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch {
    return '';
  }
  if (!st.isDirectory()) return `${st.ino}:${st.size}:${st.mtimeMs}`;
  const { files, errors } = await listManifestFiles([path]);
  return [
    'dir',
    ...files.map((f) => `${f.path}\u0000${f.ino}:${f.size}:${f.mtimeMs}`),
    ...errors.map((e) => `${e.file}\u0000${e.message}`),
  ].join('\n');
}

export interface Watcher {
  close(): void;
}

/** Calls onChange (serialized) whenever the fingerprint differs from the one given as `initial`. */
export function watchPath(opts: WatchOptions, initial: string, onChange: () => Promise<void>): Watcher {
  const debounceMs = opts.debounceMs ?? 150;
  const pollMs = opts.pollMs ?? 500;
  let last = initial;
  let closed = false;
  let running = false;
  let again = false;
  let debounce: NodeJS.Timeout | undefined;

  const check = async (): Promise<void> => {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const fp = await fingerprint(opts.path);
        if (fp !== last && !closed) {
          last = fp;
          await onChange();
        }
      } while (again && !closed);
    } finally {
      running = false;
    }
  };

  const poke = (): void => {
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => void check(), safeDelay(debounceMs));
  };

  let fsw: FSWatcher | undefined;
  try {
    fsw = watch(opts.path, { recursive: true, persistent: false }, poke);
    fsw.on('error', () => undefined);
  } catch {
    fsw = undefined; // polling alone
  }
  const poll = setInterval(() => void check(), safeDelay(pollMs));
  poll.unref();

  return {
    close() {
      closed = true;
      if (debounce) clearTimeout(debounce);
      clearInterval(poll);
      fsw?.close();
    },
  };
}
