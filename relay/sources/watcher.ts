// Change detection for file-based sources: fs.watch for speed, a periodic stat fingerprint as the fallback that
// always works (editors that replace files, ConfigMap symlink swaps, file systems without inotify). A change is
// reported once the fingerprint has been the same at two looks a debounce apart (a file being written, such as the
// output of `kubectl get ... -o yaml > f.yaml`, is not loaded half-way), at most once per poll interval, never
// concurrently. A load that failed for a reason a retry may cure (EACCES, EMFILE, a compile worker that died) is
// tried again at the next poll, then less often, although the fingerprint did not change.
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { listManifestFiles } from '../../lib/manifests.ts';
import { safeDelay } from '../../routing/timer.ts';

export interface WatchOptions {
  /** A folder of manifests (listed as lib/manifests.ts reads it) or a single file. */
  path: string;
  debounceMs?: number;
  pollMs?: number;
  /** The load of `initial` failed for a reason a retry may cure: retry at the first poll. */
  retry?: boolean;
}

/** What a load reports to the watcher: 'retry' when it failed for a reason a retry may cure. */
export type LoadReport = 'done' | 'retry';

/** Why the watcher calls onChange: the files changed, or a retry of a load that failed for a transient reason. */
export type ReloadReason = 'change' | 'retry';

/** Polls between retries of a failing load: 1, 2, 4, ... up to 64 (32 s at 500 ms), so that a file that stays unreadable is not read and compiled twice a second for ever. */
const MAX_RETRY_POLLS = 64;

/** The polls to wait before the next retry, after one that waited `previous` (undefined: the first failure). Pure. */
export function nextRetryPolls(previous: number | undefined): number {
  return previous === undefined ? 1 : Math.min(previous * 2, MAX_RETRY_POLLS);
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
  // ctime too: a chmod or chown (of a file that could not be read) changes nothing else
  if (!st.isDirectory()) return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  const { files, errors } = await listManifestFiles([path]);
  return [
    'dir',
    ...files.map((f) => `${f.path}\u0000${f.ino}:${f.size}:${f.mtimeMs}:${f.ctimeMs}`),
    ...errors.map((e) => `${e.file}\u0000${e.message}`),
  ].join('\n');
}

export interface Watcher {
  close(): void;
}

/**
 * Calls onChange (serialized) whenever the fingerprint differs from the one given as `initial` and has stayed so for
 * two looks, and again while it reports 'retry'.
 */
export function watchPath(
  opts: WatchOptions,
  initial: string,
  onChange: (why: ReloadReason) => Promise<LoadReport>,
): Watcher {
  const debounceMs = opts.debounceMs ?? 150;
  const pollMs = opts.pollMs ?? 500;
  let last = initial;
  /** A new fingerprint seen once, and when: loaded when a look at least debounceMs later sees it again. */
  let pending: { fp: string; since: number } | undefined;
  /** While a load fails for a transient reason: the polls left before the next try, and the wait it started with. */
  let retry: { left: number; wait: number } | undefined = opts.retry ? { left: 1, wait: 1 } : undefined;
  let closed = false;
  let running = false;
  let again = false;
  let debounce: NodeJS.Timeout | undefined;

  const load = async (why: ReloadReason): Promise<void> => {
    const report = await onChange(why);
    if (report === 'retry') {
      const wait = nextRetryPolls(retry?.wait);
      retry = { left: wait, wait };
    } else retry = undefined;
  };

  /** One look: load a fingerprint seen twice in a row, or retry a transient failure that is due. */
  const look = async (): Promise<void> => {
    const fp = await fingerprint(opts.path);
    if (closed) return;
    if (fp === last) {
      pending = undefined;
      if (retry !== undefined && retry.left <= 0) await load('retry');
      return;
    }
    if (fp !== pending?.fp) {
      // seen once: the file may be half written; look again after the debounce
      pending = { fp, since: performance.now() };
      poke();
      return;
    }
    if (performance.now() - pending.since < debounceMs) {
      poke(); // a poll right after the first look proves nothing
      return;
    }
    pending = undefined;
    last = fp;
    await load('change');
  };

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
        await look();
      } while (again && !closed);
    } finally {
      running = false;
    }
  };

  function poke(): void {
    if (closed) return;
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => void check(), safeDelay(debounceMs));
  }

  let fsw: FSWatcher | undefined;
  try {
    fsw = watch(opts.path, { recursive: true, persistent: false }, poke);
    fsw.on('error', () => undefined);
  } catch {
    fsw = undefined; // polling alone
  }
  const tick = (): void => {
    if (retry !== undefined) retry.left--;
    void check();
  };
  const poll = setInterval(tick, safeDelay(pollMs));
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
