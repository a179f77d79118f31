// Change detection for file-based sources: fs.watch for speed, a periodic stat fingerprint as the fallback that
// always works (editors that replace files, ConfigMap symlink swaps, file systems without inotify). A change is
// reported after a short debounce, at most once per poll interval, never concurrently.
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { safeDelay } from '../../routing/timer.ts';

export interface WatchOptions {
  /** A folder (recursive) or a single file. */
  path: string;
  debounceMs?: number;
  pollMs?: number;
  /** File names considered in a folder. */
  filter?: (name: string) => boolean;
}

/** Files under dir (recursive, sorted, dot-files skipped) with their stats. */
async function listFiles(
  dir: string,
  filter: (name: string) => boolean = () => true,
): Promise<{ path: string; ino: number; size: number; mtimeMs: number }[]> {
  const out: { path: string; ino: number; size: number; mtimeMs: number }[] = [];
  // a folder is walked once, as lib/manifests.ts reads it once: a symbolic link loop is not walked down 8 times
  const seen = new Set<string>();
  const walk = async (d: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    names.sort();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const p = join(d, name);
      try {
        const s = await stat(p);
        if (s.isDirectory()) {
          const id = `${s.dev}:${s.ino}`;
          if (depth < 8 && !seen.has(id)) {
            seen.add(id);
            await walk(p, depth + 1);
          }
        } else if (filter(name)) {
          out.push({ path: p, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs });
        }
      } catch {
        // vanished between readdir and stat: the next poll sees it
      }
    }
  };
  const top = await stat(dir).catch(() => undefined);
  if (top !== undefined) seen.add(`${top.dev}:${top.ino}`);
  await walk(dir, 0);
  return out;
}

/** A stat fingerprint: names, sizes, mtimes and inodes of the watched files; '' when the path is missing. */
export async function fingerprint(
  path: string,
  filter: (name: string) => boolean = () => true,
): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch {
    return '';
  }
  if (!st.isDirectory()) return `${st.ino}:${st.size}:${st.mtimeMs}`;
  const files = await listFiles(path, filter);
  return `dir\n${files.map((f) => `${f.path}\u0000${f.ino}:${f.size}:${f.mtimeMs}`).join('\n')}`;
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
        const fp = await fingerprint(opts.path, opts.filter);
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
