import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, it } from 'vitest';
import { DiskCache } from '../lib/stores/disk.cache.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';

// The same contract the memory and Redis backends keep, on an LMDB store in a temporary
// directory. Every cache of the suite opens the same store (each under its own prefix), as the
// processes of one app do.
const dir = mkdtempSync(join(tmpdir(), 'nest-cache-disk-behaviour-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

cacheBehaviourSuite(
  'DiskCache',
  (options) => DiskCache.create({ ...options, disk: { path: dir } }),
  {
    describe,
    it,
    afterEach,
  },
);
