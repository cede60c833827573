import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// SWC keeps decorator metadata, which Nest needs to inject BaseCache by type;
// the default esbuild transform drops it.
export default defineConfig({
  plugins: [
    swc.vite({
      jsc: {
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
        target: 'es2023',
      },
    }),
  ],
  // Tests import the package by its name, as users do, straight from the sources.
  resolve: {
    alias: [
      {
        find: /^nest-cache\/terminus$/,
        replacement: new URL('./lib/terminus/index.ts', import.meta.url).pathname,
      },
      {
        find: /^nest-cache\/testing$/,
        replacement: new URL('./lib/testing/index.ts', import.meta.url).pathname,
      },
      { find: /^nest-cache$/, replacement: new URL('./lib/index.ts', import.meta.url).pathname },
    ],
  },
  test: {
    include: ['test/**/*.spec.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 2,
    // The JSON report gives .ci/run the counts for its closing line.
    reporters: ['default', 'json'],
    outputFile: { json: 'node_modules/.cache/nest-cache/test-results.json' },
  },
});
