import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
} from 'node:fs';
import { resolve } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { CacheConfigError } from '../errors.js';
import { messages, reasonOf } from '../messages.js';
import { DISK_FORMAT } from './disk-format.js';

/** lmdb's open(), loaded by loadLmdb(). */
export type LmdbOpen = typeof import('lmdb').open;

/** The store of one path, opened and checked: the LMDB environment and the databases of ours in it. */
export interface DiskStore {
  path: string;
  root: RootDatabase<Buffer, Buffer>;
  /** Records by stored key. */
  entries: Database<Buffer, Buffer>;
  /** The expiry index: reclaimAt, kind and stored key, no value (see disk-format.ts). */
  expiry: Database<Buffer, Buffer>;
}

/** The files LMDB keeps in a store's directory: anything else there belongs to someone else. */
const STORE_FILES = new Set(['data.mdb', 'lock.mdb']);
/**
 * What a directory may hold besides a store, and is left alone: a volume's root has lost+found,
 * and dot-entries are the file system's or the platform's (.snapshot, .DS_Store).
 */
const ignored = (name: string) => name === 'lost+found' || name.startsWith('.');
const ENTRIES_DB = 'nest-cache:entries';
const EXPIRY_DB = 'nest-cache:expiry';
const META_DB = 'nest-cache:meta';
const OUR_DBS = new Set([ENTRIES_DB, EXPIRY_DB, META_DB]);
/** The format marker: the one record of the meta database. */
const MARKER_KEY = Buffer.from('format');
const MARKER_STORE = 'nest-cache-disk';

/**
 * Checks disk.path before anything is opened: a directory (created when missing) that holds
 * nothing but a store, and that this process may write. Resolves it to an absolute path.
 */
export function preparePath(path: unknown): string {
  if (typeof path !== 'string' || path.trim() === '') {
    throw new CacheConfigError(messages.diskPathRequired(path));
  }
  const absolute = resolve(path);
  const unusable = (problem: string, cause?: unknown) =>
    new CacheConfigError(messages.diskPathUnusable(absolute, problem), { cause });
  let isDirectory: boolean;
  try {
    isDirectory = statSync(absolute).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw unusable(
        `cannot be used (${reasonOf(error)}): make it a directory this process can read and write`,
        error,
      );
    }
    try {
      mkdirSync(absolute, { recursive: true });
    } catch (cause) {
      throw unusable(
        `cannot be created (${reasonOf(cause)}): create the directory, writable by the app's user, or choose one that is`,
        cause,
      );
    }
    isDirectory = true;
  }
  if (!isDirectory) {
    throw unusable(
      'is a file, not a directory: the disk backend keeps its store in a directory of its own (data.mdb and lock.mdb); point disk.path to a new or empty directory',
    );
  }
  const others = readdirSync(absolute).filter((name) => !STORE_FILES.has(name) && !ignored(name));
  if (others.length > 0) {
    throw unusable(
      `holds files that are not a store (${others
        .slice(0, 3)
        .map((name) => JSON.stringify(name))
        .join(
          ', ',
        )}${others.length > 3 ? ', ...' : ''}): point disk.path to a new or empty directory, kept for the cache`,
    );
  }
  // Checked before lmdb reads it: LMDB trusts its file, and a foreign or damaged one can crash
  // the process (SIGBUS on a page past the end of a truncated file).
  const problem = dataFileProblem(resolve(absolute, 'data.mdb'));
  if (problem !== undefined) {
    throw new CacheConfigError(messages.diskStoreUnopenable(absolute, problem));
  }
  try {
    accessSync(absolute, constants.R_OK | constants.W_OK);
    for (const file of readdirSync(absolute).filter((name) => STORE_FILES.has(name))) {
      accessSync(resolve(absolute, file), constants.R_OK | constants.W_OK);
    }
  } catch (error) {
    throw unusable(
      `is not writable by this process (${reasonOf(error)}): give the app's user read and write access to it and its files, or choose another directory`,
      error,
    );
  }
  return absolute;
}

/**
 * Opens the LMDB environment in `path` and checks that it is a store of ours, of a format this
 * version reads; a new store gets the format marker. Any failure is a CacheConfigError naming
 * disk.path, and leaves nothing open.
 */
export function openStore(open: LmdbOpen, path: string): DiskStore {
  let root: RootDatabase<Buffer, Buffer>;
  try {
    root = open<Buffer, Buffer>({
      path,
      // A directory, whatever its name looks like (lmdb takes a path with a '.' for a file).
      noSubdir: false,
      maxDbs: 4,
      encoding: 'binary',
      keyEncoding: 'binary',
      // Durability: lmdb's default sync mode (overlappingSync on Linux and macOS): a write resolves
      // once committed, and is flushed to disk right after, off the main thread. A process killed
      // at any point leaves the last committed state; a power loss may lose the last writes but
      // never leaves a store that cannot open. noSync would risk exactly that, so it stays off.
      // noMemInit stays off too: it would let bytes of process memory reach the file.
    });
  } catch (error) {
    throw new CacheConfigError(messages.diskStoreUnopenable(path, reasonOf(error)), {
      cause: error,
    });
  }
  try {
    return checked(root, path);
  } catch (error) {
    root.close().catch(() => undefined); // the error that matters is the one thrown below
    if (error instanceof CacheConfigError) throw error;
    throw new CacheConfigError(messages.diskStoreUnopenable(path, reasonOf(error)), {
      cause: error,
    });
  }
}

function checked(root: RootDatabase<Buffer, Buffer>, path: string): DiskStore {
  // The root database lists the named databases (their names end with a NUL); a store of ours
  // holds nothing else. One name more than ours is enough to tell.
  const names = [...root.getKeys({ limit: OUR_DBS.size + 1 })].map((key) =>
    Buffer.from(key as unknown as Uint8Array)
      .toString('utf8')
      .replace(/\0$/, ''),
  );
  if (names.some((name) => !OUR_DBS.has(name)) || (names.length > 0 && !names.includes(META_DB))) {
    throw new CacheConfigError(messages.diskStoreForeign(path));
  }
  const meta = root.openDB<Buffer, Buffer>({
    name: META_DB,
    encoding: 'binary',
    keyEncoding: 'binary',
  });
  // Checked and written in one write transaction: two processes creating the store at once agree.
  const found = root.transactionSync(() => {
    const marker = meta.get(MARKER_KEY);
    if (marker !== undefined) return parseMarker(marker);
    meta.putSync(
      MARKER_KEY,
      Buffer.from(JSON.stringify({ store: MARKER_STORE, format: DISK_FORMAT })),
    );
    return DISK_FORMAT;
  });
  if (found === undefined) throw new CacheConfigError(messages.diskStoreForeign(path));
  if (found !== DISK_FORMAT) {
    // There is no older format: anything else is a newer one.
    throw new CacheConfigError(messages.diskStoreNewer(path, found, DISK_FORMAT));
  }
  const entries = root.openDB<Buffer, Buffer>({
    name: ENTRIES_DB,
    encoding: 'binary',
    keyEncoding: 'binary',
  });
  const expiry = root.openDB<Buffer, Buffer>({
    name: EXPIRY_DB,
    encoding: 'binary',
    keyEncoding: 'binary',
  });
  return { path, root, entries, expiry };
}

/** The format a marker names; undefined when it is not our marker. */
function parseMarker(marker: Buffer): unknown {
  try {
    const parsed = JSON.parse(marker.toString('utf8')) as { store?: unknown; format?: unknown };
    return parsed.store === MARKER_STORE ? parsed.format : undefined;
  } catch {
    return undefined; // not JSON: not ours
  }
}

/**
 * LMDB's meta pages, as lmdb's build of LMDB (64-bit) lays them out: pages 0 and 1 each hold a
 * meta after the page header (24 bytes); with overlappingSync, a third copy of the meta fields
 * from mm_mapsize on (no magic) sits half a page into page 0. LMDB opens with the one of the
 * highest txnid. Offsets are from the start of the meta page.
 */
const META = { flags: 18, magic: 24, psize: 48, lastPage: 144, txnid: 152, bytes: 160 };
const P_META = 0x08;
const LMDB_MAGIC = 0xbeefc0de;
/** LMDB's page sizes: a power of two in this range. */
const MIN_PAGE = 512;
const MAX_PAGE = 65_536;

/**
 * Why lmdb must not open `file`, or undefined when it may: missing, or too short to hold its
 * meta pages (lmdb then creates it, or refuses it cleanly: it reads those with pread), or an LMDB
 * file whose newest meta's pages all lie within it. LMDB maps the file and trusts it: a page past
 * its end (a truncated copy, a disk that filled while copying) is a SIGBUS that kills the
 * process, which no try/catch stops.
 */
function dataFileProblem(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return `data.mdb cannot be read: ${reasonOf(error)}`;
  }
  try {
    const first = readAt(fd, 0);
    if (first === undefined) return undefined;
    if (
      !(first.readUInt16LE(META.flags) & P_META) ||
      first.readUInt32LE(META.magic) !== LMDB_MAGIC
    ) {
      return 'data.mdb is not an LMDB file';
    }
    const pageSize = first.readUInt32LE(META.psize);
    if (pageSize < MIN_PAGE || pageSize > MAX_PAGE || (pageSize & (pageSize - 1)) !== 0) {
      return 'data.mdb is damaged: its page size is not one LMDB writes';
    }
    const second = readAt(fd, pageSize);
    if (second === undefined) return undefined;
    const metas = [first, second, readAt(fd, pageSize / 2)].filter((meta) => meta !== undefined);
    const newest = metas.reduce((a, b) =>
      b.readBigUInt64LE(META.txnid) > a.readBigUInt64LE(META.txnid) ? b : a,
    );
    const needed = (newest.readBigUInt64LE(META.lastPage) + 1n) * BigInt(pageSize);
    // Its size read after its metas: another process may be committing, and LMDB writes a
    // commit's pages before its meta (and never shrinks the file).
    const size = fstatSync(fd).size;
    if (needed > BigInt(size)) {
      return `data.mdb is damaged or truncated: it is ${size} bytes, and its pages reach ${needed}`;
    }
    return undefined;
  } catch (error) {
    return `data.mdb cannot be read: ${reasonOf(error)}`;
  } finally {
    closeSync(fd);
  }
}

/** The META.bytes bytes at `position` in `fd`, or undefined when the file ends before them. */
function readAt(fd: number, position: number): Buffer | undefined {
  const out = Buffer.alloc(META.bytes);
  return readSync(fd, out, 0, out.byteLength, position) === out.byteLength ? out : undefined;
}
