import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// These tests read the built package (dist/): `npm test` builds it first.
const root = new URL('..', import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

function requireBuild(): void {
  if (!existsSync(join(root, 'dist/index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first (`npm test` does it for you).');
  }
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.js'))
    .map((entry) => join(entry.parentPath, entry.name));
}

describe('package manifest', () => {
  beforeAll(requireBuild);

  it('is ESM with an exports map whose entries have types and default, and exist', () => {
    expect(manifest.type).toBe('module');
    for (const entry of ['.', './testing']) {
      const { types, default: main } = manifest.exports[entry];
      expect(existsSync(join(root, types)), types).toBe(true);
      expect(existsSync(join(root, main)), main).toBe(true);
    }
  });

  it('declares every package the built code imports', () => {
    const declared = new Set([
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.peerDependencies ?? {}),
    ]);
    const builtins = new Set(builtinModules);
    for (const file of jsFiles(join(root, 'dist'))) {
      const source = readFileSync(file, 'utf8');
      const imports =
        /^\s*(?:import|export)\s[^;'"]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\)/gm;
      for (const [, from, bare, dynamic] of source.matchAll(imports)) {
        const specifier = from ?? bare ?? dynamic;
        if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier))
          continue;
        const name = specifier.startsWith('@')
          ? specifier.split('/').slice(0, 2).join('/')
          : specifier.split('/')[0];
        expect(declared, `${file} imports ${specifier}`).toContain(name);
      }
    }
  });

  it('makes ioredis an optional peer, so memory-only apps need not install it', () => {
    expect(manifest.peerDependencies.ioredis).toBeDefined();
    expect(manifest.peerDependenciesMeta.ioredis.optional).toBe(true);
    expect(manifest.dependencies.ioredis).toBeUndefined();
  });
});

describe('npm pack gives a package a separate app installs and uses', () => {
  let app: string;

  beforeAll(() => {
    requireBuild();
    app = mkdtempSync(join(tmpdir(), 'nest-cache-consumer-'));
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', app], {
        cwd: root,
        encoding: 'utf8',
      }),
    );
    const modules = join(app, 'node_modules');
    mkdirSync(join(modules, 'nest-cache'), { recursive: true });
    execFileSync('tar', [
      '-xzf',
      join(app, packed[0].filename),
      '-C',
      join(modules, 'nest-cache'),
      '--strip-components=1',
    ]);
    // The app's other dependencies are this repository's installed ones.
    for (const name of readdirSync(join(root, 'node_modules'))) {
      if (name !== '.bin' && !existsSync(join(modules, name)))
        symlinkSync(join(root, 'node_modules', name), join(modules, name));
    }
  }, 60_000);

  afterAll(() => rmSync(app, { recursive: true, force: true }));

  const script = (load: string) => `
    ${load}
    class AppModule {}
    Module({ imports: [CacheModule.forRoot({ ttl: '1m' })] })(AppModule);
    const main = async () => {
      const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
      const cache = app.get(BaseCache);
      await cache.set('when', { at: new Date(0) });
      const back = await cache.get('when');
      await app.close();
      console.log(JSON.stringify({ date: back.at instanceof Date, closed: cache.isClosed, suite: typeof cacheBehaviourSuite }));
    };
    main();`;

  it('loads from a CommonJS Nest app with require()', () => {
    writeFileSync(
      join(app, 'main.cjs'),
      script(`require('reflect-metadata');
        const { Module } = require('@nestjs/common');
        const { NestFactory } = require('@nestjs/core');
        const { CacheModule, BaseCache } = require('nest-cache');
        const { cacheBehaviourSuite } = require('nest-cache/testing');`),
    );
    const out = execFileSync(process.execPath, ['main.cjs'], { cwd: app, encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({
      date: true,
      closed: true,
      suite: 'function',
    });
  });

  it('loads from an ESM Nest app with import', () => {
    writeFileSync(
      join(app, 'main.mjs'),
      script(`import 'reflect-metadata';
        import { Module } from '@nestjs/common';
        import { NestFactory } from '@nestjs/core';
        import { CacheModule, BaseCache } from 'nest-cache';
        import { cacheBehaviourSuite } from 'nest-cache/testing';`),
    );
    const out = execFileSync(process.execPath, ['main.mjs'], { cwd: app, encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({
      date: true,
      closed: true,
      suite: 'function',
    });
  });

  it('ships the built code and the sources its maps point to, and no tests', () => {
    const files = execFileSync('find', ['.', '-type', 'f'], {
      cwd: join(app, 'node_modules/nest-cache'),
      encoding: 'utf8',
    });
    expect(files).toContain('./dist/index.js');
    expect(files).toContain('./dist/testing/index.d.ts');
    expect(files).not.toContain('./test/');
    expect(files).not.toContain('./sample/');
  });
});
