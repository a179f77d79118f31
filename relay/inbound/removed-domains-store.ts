// The removed domains' state (removed-domains.ts) in the spool folder: <spool>/removed-domains.json, read at start and
// written when it changes (a write to a temporary file, then a rename). It is a safety net, not mail: a file that
// cannot be read or written is logged and the relay goes on (a lost state only means 554 sooner for a removed domain).
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { RemovedDomainsState } from '../../routing/removed-domains.ts';
import { parseRemovedDomainsState } from './removed-domains.ts';

const REMOVED_DOMAINS_FILE = 'removed-domains.json';
const MAX_BYTES = 16 * 1024 * 1024;

/** The state a previous relay process saved in `dir`; undefined when there is none or it cannot be used. */
export async function loadRemovedDomains(dir: string, log: Logger): Promise<RemovedDomainsState | undefined> {
  const file = join(dir, REMOVED_DOMAINS_FILE);
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile() || st.size > MAX_BYTES) {
      log.warn({ file, size: st.size }, 'removed domains: not a file of at most 16 MiB; ignored');
      return undefined;
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    log.warn({ err, file }, 'removed domains: cannot read the saved state; ignored');
    return undefined;
  }
  const state = parseRemovedDomainsState(text);
  if (typeof state === 'string') {
    log.warn({ file, problem: state }, 'removed domains: the saved state is not valid; ignored');
    return undefined;
  }
  return state;
}

/**
 * Saves states in `dir` one write at a time; while one is written, only the latest of those given waits. A state equal
 * to the last one given (at first: `initial`, what was loaded) is not written again.
 */
export function removedDomainsSaver(
  dir: string,
  log: Logger,
  initial: RemovedDomainsState,
): (state: RemovedDomainsState) => void {
  const file = join(dir, REMOVED_DOMAINS_FILE);
  const tmp = `${file}.tmp`;
  let last = JSON.stringify(initial);
  let pending: string | undefined;
  let writing = false;
  const drain = async (): Promise<void> => {
    writing = true;
    while (pending !== undefined) {
      const text = pending;
      pending = undefined;
      try {
        await writeFile(tmp, text);
        await rename(tmp, file);
      } catch (err) {
        log.warn({ err, file }, 'removed domains: cannot save the state (a restart forgets the removals)');
      }
    }
    writing = false;
  };
  return (state) => {
    const text = JSON.stringify(state);
    if (text === last) return;
    last = text;
    pending = text;
    if (!writing) void drain();
  };
}
